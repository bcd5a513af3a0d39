package engine

import (
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// RetryAfter is how soon a client should look again at t, or 0 when the engine has no better
// answer than the caller's default. With a runner that is polled (SSM), a running or
// cancelling task changes mostly when a poll records progress (SSM's own events come
// between), so it is the time until the executor's next poll as scheduled: PollInterval after
// the dispatch, then each interval twice the last, up to MaxPollInterval. It is at least a
// second. A task that is pending, finished, or run by a runner that reports each device as it
// finishes has no cadence to follow.
func (e *Engine) RetryAfter(t *task.Task) time.Duration {
	if _, polled := e.cfg.Runner.(PolledRunner); !polled || t.StartedAt == nil ||
		(t.Status != task.StatusRunning && t.Status != task.StatusCancelling) {
		return 0
	}
	elapsed := e.cfg.Now().Sub(*t.StartedAt)
	next := time.Duration(0)
	for attempt := 0; next <= elapsed; attempt++ {
		delay := e.pollDelay(attempt)
		if delay == e.cfg.MaxPollInterval && next+delay <= elapsed {
			// From here on the polls are evenly spaced: skip to the one after elapsed.
			next += (elapsed - next) / delay * delay
		}
		next += delay
	}
	return max(next-elapsed, time.Second)
}
