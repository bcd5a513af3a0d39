package clocktest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	c := New(start)
	if !c.Now().Equal(start) || !c.Now().Equal(start) {
		t.Fatal("the clock moved by itself")
	}
	c.Advance(time.Minute)
	if got := c.Now(); !got.Equal(start.Add(time.Minute)) {
		t.Errorf("after Advance: %v", got)
	}
	c.Set(start)
	if err := c.Sleep(context.Background(), time.Second); err != nil || !c.Now().Equal(start.Add(time.Second)) {
		t.Errorf("Sleep = %v, now %v", err, c.Now())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || !slices.Equal(c.Slept(), []time.Duration{time.Second}) {
		t.Errorf("Sleep after the context ended = %v, slept %v", err, c.Slept())
	}

	tick := NewTicking(start, time.Second)
	if a, b := tick.Now(), tick.Now(); !a.Equal(start.Add(time.Second)) || !b.Equal(start.Add(2*time.Second)) {
		t.Errorf("a ticking clock read %v then %v", a, b)
	}
}

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	Eventually(t, 5*time.Second, func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n.Load() != 3 {
		t.Errorf("checked %d times, want 3", n.Load())
	}
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	t.Parallel()
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(rec, 30*time.Millisecond, func() error { return errors.New("still missing") })
	}()
	<-done
	if rec.msg != "not within 30ms: still missing" {
		t.Errorf("failure %q", rec.msg)
	}
}

// recorder is a testing.TB whose Fatalf records the message and ends only its goroutine.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
