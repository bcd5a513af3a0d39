package lambdatest_test

import (
	"testing"

	"github.com/fleetrun/fleetrun/internal/awstest"
)

// TestMain starts moto for the local-invoke test (not under -short).
func TestMain(m *testing.M) { awstest.Main(m) }
