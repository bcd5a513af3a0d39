package engine_test

import (
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestRetryAfterFollowsThePollCadence checks Retry-After against the executor's poll schedule
// after a dispatch (5 s, then 10, 20, 40 and 60 s apart: polls at 5, 15, 35, 75, 135, 195 s
// and every 60 s after), and that a task with no cadence to follow gets the caller's default.
func TestRetryAfterFollowsThePollCadence(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	now := start
	polled := engine.New(engine.Config{Runner: &pollingRunner{}, Now: func() time.Time { return now },
		PollInterval: 5 * time.Second, MaxPollInterval: 60 * time.Second})
	running := &task.Task{Status: task.StatusRunning, StartedAt: &start}
	for _, tc := range []struct{ elapsed, want time.Duration }{
		{0, 5 * time.Second},
		{6 * time.Second, 9 * time.Second},
		{15 * time.Second, 20 * time.Second},
		{80 * time.Second, 55 * time.Second},
		{200 * time.Second, 55 * time.Second},
		{time.Hour + 15*time.Second, 60 * time.Second},
		{time.Hour + 14500*time.Millisecond, time.Second}, // half a second to the poll: at least a second
	} {
		now = start.Add(tc.elapsed)
		if got := polled.RetryAfter(running); got != tc.want {
			t.Errorf("%v after the dispatch: RetryAfter = %v, want %v", tc.elapsed, got, tc.want)
		}
	}
	for _, tk := range []*task.Task{{Status: task.StatusPending}, {Status: task.StatusCompleted, StartedAt: &start}} {
		if got := polled.RetryAfter(tk); got != 0 {
			t.Errorf("a %s task: RetryAfter = %v, want 0 (the default)", tk.Status, got)
		}
	}
	pushed := engine.New(engine.Config{Runner: &fakeRunner{}, Now: func() time.Time { return now }})
	if got := pushed.RetryAfter(running); got != 0 {
		t.Errorf("a runner that reports by itself: RetryAfter = %v, want 0", got)
	}
}
