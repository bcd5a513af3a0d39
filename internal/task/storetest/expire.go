package storetest

import (
	"slices"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// expiryEpoch is where the expiry tests' clock stands: years before every other group's, so that
// sweeping this window never removes a task another group (sharing the table) still needs.
var expiryEpoch = epoch.AddDate(-10, 0, 0)

func testDeleteExpired(e *env) {
	e.run("removes expired tasks with their devices and keys", func(e *env) {
		base := expiryEpoch
		e.clock.Set(base)
		sweep := base.Add(3 * time.Hour)
		// Clear whatever an earlier run against a shared table left in this window.
		if _, err := e.store.DeleteExpired(e.ctx, sweep); err != nil {
			e.t.Fatalf("first DeleteExpired = %v", err)
		}

		owner := e.id("owner")
		gone1 := e.move(e.create(e.newTask(owner, deviceNames(2))), task.StatusCancelled, time.Hour)
		gone2 := e.move(e.create(e.newTask(owner, deviceNames(3))), task.StatusRunning, 0)
		gone2, _ = e.apply(gone2.ID, task.DeviceUpdate{DeviceID: gone2.Request.DeviceIDs[0], Status: task.DeviceSucceeded, At: base},
			task.DeviceUpdate{DeviceID: gone2.Request.DeviceIDs[1], Status: task.DeviceRunning, At: base})
		// Delivery records made while the task ran and after it ended go with it.
		e.record(e.delivery(gone2, task.WebhookTaskStarted, base, 1))
		gone2 = e.move(gone2, task.StatusFailed, 2*time.Hour)
		e.record(e.delivery(gone2, task.WebhookTaskFinished, base, 1))
		later := e.move(e.create(e.newTask(owner, deviceNames(1))), task.StatusCancelled, 10*time.Hour)
		running := e.move(e.create(e.newTask(owner, deviceNames(1))), task.StatusRunning, 0)

		shortKey, longKey := e.id("key"), e.id("key")
		withShortKey := e.newTask(owner, deviceNames(1))
		if _, _, err := e.store.CreateTask(e.ctx, withShortKey, e.idem(owner, shortKey, withShortKey.ID, "hash", time.Hour)); err != nil {
			e.t.Fatalf("CreateTask = %v", err)
		}
		withLongKey := e.newTask(owner, deviceNames(1))
		if _, _, err := e.store.CreateTask(e.ctx, withLongKey, e.idem(owner, longKey, withLongKey.ID, "hash", 10*time.Hour)); err != nil {
			e.t.Fatalf("CreateTask = %v", err)
		}

		// The store's clock stays at base, so what is gone below was deleted, not filtered out.
		n, err := e.store.DeleteExpired(e.ctx, sweep)
		if err != nil || n != 2 {
			e.t.Fatalf("DeleteExpired = %d, %v; want the 2 expired tasks", n, err)
		}
		for _, tk := range []*task.Task{gone1, gone2} {
			_, err := e.store.GetTask(e.ctx, tk.ID)
			wantCode(e.t, err, task.CodeNotFound, "GetTask of a deleted task")
		}
		for _, tk := range []*task.Task{later, running, withShortKey, withLongKey} {
			sameTask(e.t, "a task DeleteExpired kept", e.get(tk.ID), tk)
		}
		want := []*task.Task{later, running, withShortKey, withLongKey}
		slices.SortFunc(want, newestFirst)
		e.wantOwnerTasks(owner, taskIDs(want)...)

		// The expired key was removed: another body may use it now. The other one still holds.
		fresh := e.newTask(owner, deviceNames(1))
		if _, created, err := e.store.CreateTask(e.ctx, fresh, e.idem(owner, shortKey, fresh.ID, "other-hash", time.Hour)); err != nil || !created {
			e.t.Errorf("CreateTask with the deleted key = created %v, %v; want created", created, err)
		}
		_, _, err = e.store.CreateTask(e.ctx, e.newTask(owner, nil), e.idem(owner, longKey, "", "other-hash", time.Hour))
		wantCode(e.t, err, task.CodeIdempotencyMismatch, "CreateTask with a key that has not expired")

		// The devices went with their task: a new task under the same id starts with none.
		again := e.newTask(owner, gone2.Request.DeviceIDs)
		again.ID = gone2.ID
		e.create(again)
		for _, d := range e.allDevices(again.ID) {
			if d.Status != task.DevicePending {
				e.t.Errorf("device %s of a re-created task is %s, want pending", d.ID, d.Status)
			}
		}
		if got := e.allDeliveries(again.ID, 10); len(got) != 0 {
			e.t.Errorf("a re-created task lists the delivery records of the deleted one: %v", got)
		}

		if n, err := e.store.DeleteExpired(e.ctx, sweep); err != nil || n != 0 {
			e.t.Errorf("second DeleteExpired = %d, %v; want 0", n, err)
		}
	})
}
