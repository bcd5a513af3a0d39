package engine_test

import (
	"context"
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestBacklogRefusesSubmitsPastItsBoundAndStoresNothing(t *testing.T) {
	t.Parallel()
	store, clock := openStore(t)
	backlog := engine.NewBacklog(engine.BacklogConfig{MaxPending: 5, Now: clock.Now})
	q := &queue{}
	runner := &fakeRunner{}
	eng := engine.New(engine.Config{Store: store, Queue: q, Runner: runner, Notifier: backlog, Admission: backlog,
		Rules: task.Rules{DeviceID: task.LocalDeviceID}, Now: clock.Now})
	ctx := context.Background()
	submit := func(devices ...string) (*task.Task, error) {
		tk, _, err := eng.Submit(ctx, engine.Submission{Owner: "alice", Draft: task.Draft{DeviceIDs: devices, ScriptURL: "x.sh"}})
		return tk, err
	}

	first, err := submit("a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := submit("d", "e"); err != nil {
		t.Fatalf("a submit that fills the bound: %v", err)
	}
	if n := backlog.Pending(); n != 5 {
		t.Fatalf("pending %d, want 5", n)
	}
	_, err = submit("f")
	if !task.IsCode(err, task.CodeUnavailable) {
		t.Fatalf("a submit past the bound = %v, want unavailable", err)
	}
	page, err := store.ListTasks(ctx, task.ListQuery{Owner: "alice", Limit: 10})
	if err != nil || len(page.Tasks) != 2 {
		t.Fatalf("stored %d tasks (%v), want the 2 admitted", len(page.Tasks), err)
	}

	// Devices that start, or end, make room again; a task's end frees what it had pending.
	if err := eng.Handle(ctx, engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: first.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Report(ctx, first.ID, []task.DeviceUpdate{{DeviceID: "a", Status: task.DeviceRunning, At: clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := submit("f"); err != nil {
		t.Fatalf("a submit after a device started: %v", err)
	}
	if _, err := eng.Cancel(ctx, task.Caller{Owner: "alice"}, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Report(ctx, first.ID, []task.DeviceUpdate{{DeviceID: "a", Status: task.DeviceCancelled, At: clock.Now()},
		{DeviceID: "b", Status: task.DeviceCancelled, At: clock.Now()}, {DeviceID: "c", Status: task.DeviceCancelled, At: clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	if n := backlog.Pending(); n != 3 {
		t.Errorf("pending %d after the first task ended, want 3", n)
	}
}

func TestBacklogAdmitsAnOversizedTaskIntoAnEmptyQueue(t *testing.T) {
	t.Parallel()
	b := engine.NewBacklog(engine.BacklogConfig{MaxPending: 10})
	release, err := b.Admit(50)
	if err != nil {
		t.Fatalf("a task larger than the bound, nothing queued: %v", err)
	}
	if _, err := b.Admit(1); !task.IsCode(err, task.CodeUnavailable) {
		t.Errorf("while it is being stored, another submit = %v, want unavailable", err)
	}
	release()
	release() // twice is harmless
	if b.Pending() != 0 {
		t.Errorf("pending %d after release, want 0", b.Pending())
	}
}

func TestBacklogIgnoresStaleNotifications(t *testing.T) {
	t.Parallel()
	running := &task.Task{ID: "T", Status: task.StatusRunning, Version: 3, Counts: task.Counts{Total: 4, Pending: 2, Running: 2}}
	b := engine.NewBacklog(engine.BacklogConfig{MaxPending: 100, Active: []*task.Task{running}})
	stale := *running
	stale.Version, stale.Counts.Pending = 2, 4
	b.Notify(&stale)
	if b.Pending() != 2 {
		t.Fatalf("pending %d after an older notification, want 2", b.Pending())
	}
	done := *running
	done.Version, done.Status, done.Counts.Pending = 9, task.StatusCancelled, 0
	b.Notify(&done)
	late := *running
	late.Version = 8
	b.Notify(&late)
	if b.Pending() != 0 {
		t.Errorf("pending %d after the task ended, want 0", b.Pending())
	}
}
