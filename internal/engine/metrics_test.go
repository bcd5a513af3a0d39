package engine_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/task"
)

// recordedMetrics is an engine.Metrics that keeps every call.
type recordedMetrics struct {
	mu         sync.Mutex
	submitted  int
	dispatched []time.Duration
	finished   []finishedTask
}

type finishedTask struct {
	status   task.Status
	duration time.Duration
	devices  task.Counts
}

func (m *recordedMetrics) TaskSubmitted(context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.submitted++
}

func (m *recordedMetrics) TaskDispatched(_ context.Context, latency time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dispatched = append(m.dispatched, latency)
}

func (m *recordedMetrics) TaskFinished(_ context.Context, s task.Status, d time.Duration, c task.Counts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finished = append(m.finished, finishedTask{s, d, c})
}

// TestMetricsCountEachEventOnce drives two tasks through duplicated deliveries and checks that
// every measurement is taken exactly once, by the write that made the change: an idempotent
// replay is not a submission, a redelivered dispatch is not a second dispatch, and duplicated
// device reports do not count a device twice.
func TestMetricsCountEachEventOnce(t *testing.T) {
	t.Parallel()
	clock := clocktest.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	store, err := localstore.Open(filepath.Join(t.TempDir(), "db"), localstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m := &recordedMetrics{}
	eng := engine.New(engine.Config{Store: store, Queue: &queue{}, Runner: &fakeRunner{}, Publisher: &publisher{},
		Metrics: m, Rules: task.Rules{DeviceID: task.LocalDeviceID}, Now: clock.Now})
	ctx := context.Background()
	sub := engine.Submission{Owner: "alice", IdempotencyKey: "k1", RequestHash: "h1",
		Draft: task.Draft{DeviceIDs: []string{"a", "b", "c"}, ScriptURL: "hello.sh"}}
	t1, _, err := eng.Submit(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, created, err := eng.Submit(ctx, sub); err != nil || created {
		t.Fatalf("replay: created %v, %v", created, err)
	}
	t2, _, err := eng.Submit(ctx, engine.Submission{Owner: "alice",
		Draft: task.Draft{DeviceIDs: []string{"x", "y"}, ScriptURL: "hello.sh"}})
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(3 * time.Second)
	dispatch := engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: t1.ID}
	for range 2 {
		if err := eng.Handle(ctx, dispatch); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Second)
	report := func(status task.DeviceStatus, ids ...string) {
		var ups []task.DeviceUpdate
		for _, id := range ids {
			ups = append(ups, task.DeviceUpdate{DeviceID: id, Status: status, At: clock.Now()})
		}
		if _, err := eng.Report(ctx, t1.ID, ups); err != nil {
			t.Fatal(err)
		}
	}
	report(task.DeviceSucceeded, "a", "b")
	report(task.DeviceSucceeded, "a", "b")
	report(task.DeviceFailed, "c")
	report(task.DeviceFailed, "c")
	if _, err := eng.Cancel(ctx, task.Caller{Owner: "alice"}, t2.ID); err != nil {
		t.Fatal(err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.submitted != 2 {
		t.Errorf("submitted %d, want 2 (the replay is not a submission)", m.submitted)
	}
	if len(m.dispatched) != 1 || m.dispatched[0] != 3*time.Second {
		t.Errorf("dispatched %v, want once, 3s after the submission", m.dispatched)
	}
	want := []finishedTask{
		{task.StatusCompleted, 5 * time.Second, task.Counts{Total: 3, Succeeded: 2, Failed: 1}},
		{task.StatusCancelled, 5 * time.Second, task.Counts{Total: 2, Cancelled: 2}},
	}
	if len(m.finished) != len(want) {
		t.Fatalf("finished %+v, want %+v", m.finished, want)
	}
	for i, w := range want {
		if m.finished[i] != w {
			t.Errorf("finished[%d] = %+v, want %+v", i, m.finished[i], w)
		}
	}
}
