package dynamo

import (
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/task/storetest"
)

// TestConformance runs the store conformance suite against DynamoDB (moto), with a fresh
// table for each group of tests.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("needs moto; skipped under -short")
	}
	storetest.Run(t, func(t *testing.T, now func() time.Time) task.Store {
		return newTable(t).store(now)
	})
}
