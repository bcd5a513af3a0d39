package engine_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestRelaunch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	orig := b.submit(t, "a", "b", "c", "d")
	relaunch := func(r engine.Relaunch) (*task.Task, bool, error) {
		r.Caller, r.TaskID = alice, orig.ID
		return b.eng.Relaunch(ctx, r)
	}
	// A task that has not finished cannot be relaunched.
	_, _, err := relaunch(engine.Relaunch{Draft: task.RelaunchDraft{Which: task.RelaunchAll}})
	var te *task.Error
	if !errors.As(err, &te) || te.Code != task.CodeConflict || te.Status != task.StatusPending {
		t.Fatalf("relaunch of a pending task: %v", err)
	}
	b.handle(t, engine.ActionDispatch, orig.ID)
	b.report(t, orig.ID, task.DeviceFailed, "a")
	b.report(t, orig.ID, task.DeviceSucceeded, "b")
	b.report(t, orig.ID, task.DeviceTimedOut, "c")
	b.report(t, orig.ID, task.DeviceSucceeded, "d")

	timeout := 30
	r := engine.Relaunch{Draft: task.RelaunchDraft{Which: task.RelaunchFailed, TimeoutSeconds: &timeout},
		IdempotencyKey: "relaunch-1", RequestHash: "h1"}
	again, created, err := relaunch(r)
	if err != nil || !created {
		t.Fatalf("relaunch: %v (created %v)", err, created)
	}
	if again.RelaunchOf != orig.ID || !slices.Equal(again.Request.DeviceIDs, []string{"a", "c"}) ||
		again.Request.TimeoutSeconds != 30 || again.Request.ScriptURL != orig.Request.ScriptURL ||
		again.Status != task.StatusPending {
		t.Fatalf("relaunched task = %+v", again)
	}
	// It is queued like any submit, and the same key and body return the same relaunch.
	if n := slices.Index(b.queue.actions(), engine.ActionDispatch); n < 0 {
		t.Fatalf("the relaunch was not queued: %v", b.queue.actions())
	}
	replay, created, err := relaunch(r)
	if err != nil || created || replay.ID != again.ID {
		t.Fatalf("replay: %v, created %v, %v; want %s", replay, created, err, again.ID)
	}
	r.RequestHash = "h2"
	if _, _, err := relaunch(r); !task.IsCode(err, task.CodeIdempotencyMismatch) {
		t.Fatalf("the same key with another body: %v", err)
	}

	// All, and a list; then the original lists its relaunches, newest first.
	all, _, err := relaunch(engine.Relaunch{Draft: task.RelaunchDraft{Which: task.RelaunchAll}})
	if err != nil || !slices.Equal(all.Request.DeviceIDs, orig.Request.DeviceIDs) {
		t.Fatalf("relaunch all: %+v, %v", all, err)
	}
	b.clock.Advance(1)
	list, _, err := relaunch(engine.Relaunch{Draft: task.RelaunchDraft{DeviceIDs: []string{"d", "b"}}})
	if err != nil || !slices.Equal(list.Request.DeviceIDs, []string{"d", "b"}) {
		t.Fatalf("relaunch of a list: %+v, %v", list, err)
	}
	page, err := b.eng.List(ctx, task.ListQuery{Owner: "alice", RelaunchOf: orig.ID})
	if err != nil || len(page.Tasks) != 3 || page.Tasks[0].ID != list.ID {
		t.Fatalf("relaunches of the original = %v, %v", page, err)
	}
	if _, _, err := relaunch(engine.Relaunch{Draft: task.RelaunchDraft{DeviceIDs: []string{"z"}}}); !task.IsCode(err, task.CodeInvalid) {
		t.Errorf("relaunch of a device not in the task: %v", err)
	}
	if _, _, err := b.eng.Relaunch(ctx, engine.Relaunch{Caller: task.Caller{Owner: "mallory"}, TaskID: orig.ID,
		Draft: task.RelaunchDraft{Which: task.RelaunchAll}}); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("relaunch by another owner: %v", err)
	}

	// "failed" when every device succeeded says so.
	clean := b.submit(t, "x")
	b.handle(t, engine.ActionDispatch, clean.ID)
	b.report(t, clean.ID, task.DeviceSucceeded, "x")
	_, _, err = b.eng.Relaunch(ctx, engine.Relaunch{Caller: alice, TaskID: clean.ID, Draft: task.RelaunchDraft{Which: task.RelaunchFailed}})
	if !errors.As(err, &te) || te.Code != task.CodeInvalid || len(te.Fields) != 1 || te.Fields[0].Pointer != "/devices" {
		t.Fatalf("relaunch of failed devices when none failed: %v", err)
	}
}
