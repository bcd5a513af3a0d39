package ssmrun_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// bundle is what most tests need: a test SSM server, a command log, a clock and a runner.
type bundle struct {
	srv    *ssmtest.Server
	log    *ssmrun.MemoryLog
	clock  *clocktest.Clock
	runner *ssmrun.Runner
}

func setup(t *testing.T, tweak ...func(*ssmrun.Config)) *bundle {
	t.Helper()
	b := &bundle{srv: ssmtest.Start(t), log: ssmrun.NewMemoryLog(), clock: clocktest.New(time.Now().UTC().Truncate(time.Second))}
	b.srv.SetNow(b.clock.Now)
	cfg := ssmrun.Config{API: b.srv.Client(), CommandLog: b.log, AllowedBuckets: []string{"fleet-scripts"}, Now: b.clock.Now}
	for _, f := range tweak {
		f(&cfg)
	}
	b.runner = ssmrun.New(cfg)
	return b
}

func device(n int) string { return fmt.Sprintf("i-%017x", n) }

func devices(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = device(i + 1)
	}
	return out
}

// runningTask is a task as the engine hands it to Start: running, started now.
func (b *bundle) runningTask(id string, deviceIDs []string) *task.Task {
	now := b.clock.Now()
	return &task.Task{ID: id, Status: task.StatusRunning, Version: 2, CreatedAt: now, UpdatedAt: now, StartedAt: &now,
		Request: task.Request{DeviceIDs: deviceIDs, ScriptURL: "s3://fleet-scripts/ops/patch.sh",
			Args: []string{"--dry-run", "it's here", "$HOME"}, TimeoutSeconds: 600, MaxConcurrency: "10", MaxErrors: "0"},
		Counts: task.Counts{Total: len(deviceIDs), Pending: len(deviceIDs)}}
}
