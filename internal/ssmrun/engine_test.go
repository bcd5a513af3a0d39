package ssmrun_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// queue is a queue whose messages the test delivers by hand, one at a time, in order.
type queue struct {
	mu   sync.Mutex
	msgs []engine.Message
}

func (q *queue) Send(_ context.Context, m engine.Message, _ time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

// deliver hands the oldest queued message with action a to the engine.
func (q *queue) deliver(t *testing.T, e *engine.Engine, a engine.Action) {
	t.Helper()
	q.mu.Lock()
	i := slices.IndexFunc(q.msgs, func(m engine.Message) bool { return m.Action == a })
	if i < 0 {
		q.mu.Unlock()
		t.Fatalf("no %s message queued", a)
	}
	m := q.msgs[i]
	q.msgs = slices.Delete(q.msgs, i, i+1)
	q.mu.Unlock()
	if err := e.Handle(t.Context(), m); err != nil {
		t.Fatalf("handle %s: %v", a, err)
	}
}

type engineBundle struct {
	*bundle
	engine *engine.Engine
	queue  *queue
	store  *localstore.Store
}

func setupEngine(t *testing.T) *engineBundle {
	t.Helper()
	b := setup(t)
	store, err := localstore.Open(filepath.Join(t.TempDir(), "fleetrun.db"), localstore.Options{Now: b.clock.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	q := &queue{}
	e := engine.New(engine.Config{Store: store, Queue: q, Runner: b.runner, Now: b.clock.Now,
		Rules: task.Rules{DeviceID: task.ManagedNodeID, CheckScript: ssmrun.CheckScript([]string{"fleet-scripts"})}})
	return &engineBundle{bundle: b, engine: e, queue: q, store: store}
}

func (eb *engineBundle) submit(t *testing.T, ids []string) *task.Task {
	t.Helper()
	tk, _, err := eb.engine.Submit(t.Context(), engine.Submission{Owner: "alice", Draft: task.Draft{
		DeviceIDs: ids, ScriptURL: "s3://fleet-scripts/patch.sh", TimeoutSeconds: new(600)}})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return tk
}

func (eb *engineBundle) devices(t *testing.T, id string) map[string]*task.Device {
	t.Helper()
	page, err := eb.engine.Devices(t.Context(), "alice", id, task.DeviceQuery{Limit: task.MaxPageSize})
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	out := map[string]*task.Device{}
	for _, d := range page.Devices {
		out[d.ID] = d
	}
	return out
}

func TestEngineTimesOutADeviceThatNeverFinishes(t *testing.T) {
	t.Parallel()
	eb := setupEngine(t)
	eb.srv.Script(device(1), ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: "done\n"})
	eb.srv.Script(device(2), ssmtest.Script{Polls: 0, Outcome: ssmtest.Never})
	tk := eb.submit(t, []string{device(1), device(2)})

	eb.queue.deliver(t, eb.engine, engine.ActionDispatch)
	eb.queue.deliver(t, eb.engine, engine.ActionPoll)
	got, err := eb.engine.Get(t.Context(), "alice", tk.ID)
	if err != nil || got.Status != task.StatusRunning || got.Counts.Succeeded != 1 || got.Counts.Running != 1 {
		t.Fatalf("after the first poll: %+v %v", got, err)
	}

	eb.clock.Advance(601 * time.Second)
	eb.queue.deliver(t, eb.engine, engine.ActionPoll)
	got, err = eb.engine.Get(t.Context(), "alice", tk.ID)
	if err != nil || got.Status != task.StatusTimedOut {
		t.Fatalf("after the deadline: %+v %v, want timed_out", got, err)
	}
	devs := eb.devices(t, tk.ID)
	if devs[device(1)].Status != task.DeviceSucceeded || devs[device(1)].Stdout != "done\n" || devs[device(2)].Status != task.DeviceTimedOut {
		t.Errorf("devices: %s %q, %s", devs[device(1)].Status, devs[device(1)].Stdout, devs[device(2)].Status)
	}
	if n := eb.srv.Calls(ssmtest.OpCancelCommand); n != 1 {
		t.Errorf("CancelCommand called %d times, want 1 (the device still running is stopped)", n)
	}
	cmd := eb.srv.Commands()[0].CommandID
	if st, _ := eb.srv.Invocation(cmd, device(2)); st.Status != ssmtest.StatusCancelling {
		t.Errorf("the timed-out device's invocation is %s, want Cancelling", st.Status)
	}
}

func TestEngineCancelEndsCancelled(t *testing.T) {
	t.Parallel()
	eb := setupEngine(t)
	eb.srv.SetDefault(ssmtest.Script{Polls: 0, Outcome: ssmtest.Never})
	tk := eb.submit(t, devices(3))

	eb.queue.deliver(t, eb.engine, engine.ActionDispatch)
	eb.queue.deliver(t, eb.engine, engine.ActionPoll)
	got, err := eb.engine.Cancel(t.Context(), "alice", tk.ID)
	if err != nil || got.Status != task.StatusCancelling {
		t.Fatalf("Cancel: %+v %v, want cancelling", got, err)
	}
	eb.queue.deliver(t, eb.engine, engine.ActionCancel)
	if n := eb.srv.Calls(ssmtest.OpCancelCommand); n != 1 {
		t.Fatalf("CancelCommand called %d times, want 1", n)
	}
	eb.queue.deliver(t, eb.engine, engine.ActionPoll)
	got, err = eb.engine.Get(t.Context(), "alice", tk.ID)
	if err != nil || got.Status != task.StatusCancelled || got.Counts.Cancelled != 3 {
		t.Fatalf("after the devices confirmed: %+v %v, want cancelled with 3 cancelled devices", got, err)
	}
	for id, d := range eb.devices(t, tk.ID) {
		if d.Status != task.DeviceCancelled || d.Ref == "" {
			t.Errorf("device %s: %s ref %q", id, d.Status, d.Ref)
		}
	}
}
