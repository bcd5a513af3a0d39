package localqueue

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
)

// recorder records every delivery and fails the first failures[taskID] of them.
type recorder struct {
	mu        sync.Mutex
	delivered map[string]int
	failures  map[string]int
	err       error
	changed   chan struct{}
}

func newRecorder() *recorder {
	return &recorder{delivered: map[string]int{}, failures: map[string]int{}, changed: make(chan struct{}, 100)}
}

func (r *recorder) handle(_ context.Context, m engine.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered[m.TaskID]++
	r.changed <- struct{}{}
	if r.failures[m.TaskID] > 0 {
		r.failures[m.TaskID]--
		if r.err != nil {
			return r.err
		}
		return errors.New("not yet")
	}
	return nil
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered[id]
}

func (r *recorder) waitFor(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for r.count(id) < n {
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("task %s delivered %d times, want %d", id, r.count(id), n)
		}
	}
}

func msg(id string) engine.Message {
	return engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: id}
}

func TestDeliversAndRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.failures["a"] = 2
	q := New(r.handle, Options{Backoff: time.Millisecond})
	defer q.Close()

	if err := q.Send(context.Background(), msg("a"), 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Send(context.Background(), msg("b"), 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "a", 3) // two failures, then success
	r.waitFor(t, "b", 1)
}

func TestDropsMalformedAndExhaustedMessages(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.failures["bad"] = 100
	r.err = engine.ErrMalformed
	q := New(r.handle, Options{Backoff: time.Millisecond, MaxAttempts: 3})
	if err := q.Send(context.Background(), msg("bad"), 0); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "bad", 1)
	q.Close()
	if got := r.count("bad"); got != 1 {
		t.Fatalf("malformed message delivered %d times, want once", got)
	}

	r2 := newRecorder()
	r2.failures["flaky"] = 100
	q2 := New(r2.handle, Options{Backoff: time.Millisecond, MaxAttempts: 3})
	if err := q2.Send(context.Background(), msg("flaky"), 0); err != nil {
		t.Fatal(err)
	}
	r2.waitFor(t, "flaky", 3)
	q2.Close()
	if got := r2.count("flaky"); got != 3 {
		t.Fatalf("failing message delivered %d times, want MaxAttempts=3", got)
	}
}

func TestSendAfterCloseFails(t *testing.T) {
	t.Parallel()
	q := New(newRecorder().handle, Options{})
	q.Close()
	if err := q.Send(context.Background(), msg("x"), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}
