// Package clocktest is the one fake clock of fleetrun's tests, and the one way they wait for a
// condition: a test never sleeps for time to pass; it moves a Clock, or waits with Eventually
// for what it expects, up to a deadline.
package clocktest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// Clock is a clock that moves only when told to: by Advance, Set or Sleep, or by the step of a
// clock made with NewTicking on each read. It is safe for concurrent use; pass its Now method
// wherever a package takes a clock.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	step   time.Duration
	sleeps []time.Duration
}

// New returns a Clock that reads start until it is moved.
func New(start time.Time) *Clock {
	return &Clock{now: start}
}

// NewTicking returns a Clock that moves forward by step before each read, so that every write
// a test makes has a time of its own.
func NewTicking(start time.Time, step time.Duration) *Clock {
	return &Clock{now: start, step: step}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Sleep is a sleep function for code that takes one: it returns at once, having moved the clock
// forward by d and recorded d, or ctx's error if ctx has ended.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

// Slept returns every duration Sleep was called with, in order.
func (c *Clock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

// pollEvery is how often Eventually checks.
const pollEvery = 10 * time.Millisecond

// Eventually calls check until it returns nil, and fails the test with check's last error when
// that has not happened within the given time. check says what is still missing, so a failure
// shows the last state seen. Like t.Fatal, it must be called from the test's goroutine.
func Eventually(t testing.TB, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", within, err)
		}
		time.Sleep(pollEvery)
	}
}
