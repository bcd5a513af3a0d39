// Package awstest runs tests against moto, a local emulator of the AWS wire protocols. The
// production code paths are used unchanged: the SDK is pointed at moto only through the
// standard AWS_ENDPOINT_URL variable and dummy credentials, as it would be at any emulator.
package awstest

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fleetrun/fleetrun/internal/awsretry"
)

// Moto is a running moto server.
type Moto struct {
	Endpoint string
	cmd      *exec.Cmd
}

// StartMoto starts `python3 -m moto.server` on a free loopback port and waits until it answers.
func StartMoto() (*Moto, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Getenv("FLEETRUN_MOTO_LOG") == "" {
		cmd.Stdout, cmd.Stderr = nil, nil
	} else {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("awstest: start moto: %w", err)
	}
	m := &Moto{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(m.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return m, nil
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("awstest: moto did not answer on %s: %w", m.Endpoint, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the moto server and its process group.
func (m *Moto) Stop() {
	if m == nil || m.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	_ = m.cmd.Wait()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// endpoint is the moto server of this test binary, set by Main.
var endpoint string

// Main is a TestMain for packages whose tests need moto. Under -short it starts nothing and
// the tests that call Config skip. Otherwise it starts moto, points the SDK at it through
// AWS_ENDPOINT_URL with dummy credentials, runs the tests and stops moto.
func Main(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	moto, err := StartMoto()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	endpoint = moto.Endpoint
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":            moto.Endpoint,
		"AWS_ACCESS_KEY_ID":           "testing",
		"AWS_SECRET_ACCESS_KEY":       "testing",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "us-east-1",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		os.Setenv(k, v)
	}
	code := m.Run()
	moto.Stop()
	os.Exit(code)
}

// Endpoint returns the moto endpoint of this test binary, skipping the test when moto is not
// running (under -short).
func Endpoint(t testing.TB) string {
	t.Helper()
	if endpoint == "" {
		t.Skip("needs moto: started by awstest.Main in TestMain; skipped under -short")
	}
	return endpoint
}

// TestRetry is production's retryer (awsretry) with delays short enough for tests.
var TestRetry = awsretry.Options{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

// Config loads the SDK configuration as production does (awsretry.LoadConfig, with the
// awsretry retryer, its delays shortened to TestRetry's),
// which picks moto up from AWS_ENDPOINT_URL. It skips the test when moto is not running.
func Config(t testing.TB) aws.Config {
	t.Helper()
	Endpoint(t)
	cfg, err := awsretry.LoadConfig(context.Background(), TestRetry)
	if err != nil {
		t.Fatalf("load AWS config: %v", err)
	}
	return cfg
}
