package awsflow

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
)

// ssmServer is the SSM test server of this test binary. Every test's SDK configuration reaches
// it through AWS_ENDPOINT_URL_SSM, the same way the functions would reach any SSM emulator.
// It is shared: tests that inject SSM faults or look at its call counts run one at a time
// (they do not call t.Parallel), and every test uses device ids of its own.
var ssmServer *ssmtest.Server

// TestMain starts the SSM test server and points the SDK at it, then hands over to awstest.Main,
// which starts moto, points everything else at it through AWS_ENDPOINT_URL, runs the tests and
// exits. The SSM server lives in this process and ends with it. Under -short nothing starts
// and the tests skip.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		ssmServer = ssmtest.NewServer()
		if err := os.Setenv("AWS_ENDPOINT_URL_SSM", ssmServer.URL); err != nil {
			fmt.Fprintln(os.Stderr, "awsflow: set AWS_ENDPOINT_URL_SSM:", err)
			os.Exit(1)
		}
	}
	awstest.Main(m)
}
