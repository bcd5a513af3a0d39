package ssmrun_test

import (
	"context"
	"sync"
	"testing"

	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
)

// throttles counts ThrottleObserver calls by operation.
type throttles struct {
	mu sync.Mutex
	by map[string]int
}

func (c *throttles) SSMThrottled(_ context.Context, op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.by[op]++
}

func TestObserveThrottlesCountsEveryThrottledAttempt(t *testing.T) {
	t.Parallel()
	obs := &throttles{by: map[string]int{}}
	b := setup(t)
	b.runner = ssmrun.New(ssmrun.Config{API: b.srv.Client(ssmrun.ObserveThrottles(obs)), CommandLog: b.log,
		AllowedBuckets: []string{"fleet-scripts"}, Now: b.clock.Now})
	b.srv.ThrottleNext(ssmtest.OpSendCommand, 2)
	b.srv.ThrottleNext(ssmtest.OpListCommandInvocations, 1)
	tk := b.runningTask("t-throttled", devices(3))
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start through two throttled attempts: %v", err)
	}
	if _, err := b.runner.Poll(t.Context(), tk); err != nil {
		t.Fatalf("Poll through a throttled attempt: %v", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.by[ssmtest.OpSendCommand] != 2 || obs.by[ssmtest.OpListCommandInvocations] != 1 || len(obs.by) != 2 {
		t.Errorf("observed throttles %v, want SendCommand 2 and ListCommandInvocations 1", obs.by)
	}
}
