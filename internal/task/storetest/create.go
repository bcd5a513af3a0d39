package storetest

import (
	"fmt"
	"slices"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testCreateTask(e *env) {
	e.run("stores a pending task", func(e *env) {
		owner := e.id("owner")
		want := e.newTask(owner, deviceNames(3))
		stored, created, err := e.store.CreateTask(e.ctx, want, nil)
		if err != nil || !created {
			e.t.Fatalf("CreateTask = created %v, %v; want created", created, err)
		}
		sameTask(e.t, "returned task", stored, want)
		sameTask(e.t, "GetTask", e.get(want.ID), want)
	})

	e.run("keeps the targets the devices came from", func(e *env) {
		want := e.newTask(e.id("owner"), deviceNames(2))
		want.Request.Targets = []task.Target{{Key: "tag:Env", Values: []string{"prod"}}, {Key: "tag:Role", Values: []string{"web", "db"}}}
		want.Request.IncludeOffline = true
		e.create(want)
		sameTask(e.t, "GetTask", e.get(want.ID), want)
	})

	e.run("replays the same key and body", func(e *env) {
		owner, key := e.id("owner"), e.id("key")
		first := e.newTask(owner, deviceNames(2))
		stored, created, err := e.store.CreateTask(e.ctx, first, e.idem(owner, key, first.ID, "hash-1", time.Hour))
		if err != nil || !created {
			e.t.Fatalf("first CreateTask = created %v, %v", created, err)
		}
		sameTask(e.t, "first create", stored, first)

		e.clock.Advance(time.Minute)
		second := e.newTask(owner, deviceNames(2))
		got, created, err := e.store.CreateTask(e.ctx, second, e.idem(owner, key, second.ID, "hash-1", time.Hour))
		if err != nil || created {
			e.t.Fatalf("replayed CreateTask = created %v, %v; want the first task, not created", created, err)
		}
		sameTask(e.t, "replay", got, first)
		_, err = e.store.GetTask(e.ctx, second.ID)
		wantCode(e.t, err, task.CodeNotFound, "GetTask of the task a replay did not create")
		e.wantOwnerTasks(owner, first.ID)
	})

	e.run("refuses the same key with another body", func(e *env) {
		owner, key := e.id("owner"), e.id("key")
		first := e.newTask(owner, deviceNames(2))
		if _, _, err := e.store.CreateTask(e.ctx, first, e.idem(owner, key, first.ID, "hash-1", time.Hour)); err != nil {
			e.t.Fatalf("first CreateTask = %v", err)
		}
		other := e.newTask(owner, deviceNames(5))
		_, _, err := e.store.CreateTask(e.ctx, other, e.idem(owner, key, other.ID, "hash-2", time.Hour))
		wantCode(e.t, err, task.CodeIdempotencyMismatch, "CreateTask with a reused key")
		_, err = e.store.GetTask(e.ctx, other.ID)
		wantCode(e.t, err, task.CodeNotFound, "GetTask of the refused task")
		e.wantOwnerTasks(owner, first.ID)

		// The refusal changed nothing: the first body still replays.
		got, created, err := e.store.CreateTask(e.ctx, e.newTask(owner, nil), e.idem(owner, key, "", "hash-1", time.Hour))
		if err != nil || created || got.ID != first.ID {
			e.t.Errorf("replay after a refusal = %v, created %v, %v; want %s", got, created, err, first.ID)
		}
	})

	e.run("keys of different owners are independent", func(e *env) {
		key := e.id("key")
		a, b := e.id("owner-a"), e.id("owner-b")
		ta := e.newTask(a, deviceNames(1))
		if _, created, err := e.store.CreateTask(e.ctx, ta, e.idem(a, key, ta.ID, "hash-a", time.Hour)); err != nil || !created {
			e.t.Fatalf("CreateTask for %s = created %v, %v", a, created, err)
		}
		tb := e.newTask(b, deviceNames(1))
		got, created, err := e.store.CreateTask(e.ctx, tb, e.idem(b, key, tb.ID, "hash-a", time.Hour))
		if err != nil || !created {
			e.t.Fatalf("CreateTask for %s with %s's key = created %v, %v; want created", b, a, created, err)
		}
		sameTask(e.t, "other owner's create", got, tb)
		tc := e.newTask(b, deviceNames(1))
		_, _, err = e.store.CreateTask(e.ctx, tc, e.idem(b, key, tc.ID, "hash-b", time.Hour))
		wantCode(e.t, err, task.CodeIdempotencyMismatch, "reuse of "+b+"'s own key with another body")
		e.wantOwnerTasks(b, tb.ID)
		e.wantOwnerTasks(a, ta.ID)
	})

	e.run("an expired key no longer matches", func(e *env) {
		owner, key := e.id("owner"), e.id("key")
		first := e.newTask(owner, deviceNames(1))
		if _, _, err := e.store.CreateTask(e.ctx, first, e.idem(owner, key, first.ID, "hash-1", time.Hour)); err != nil {
			e.t.Fatalf("first CreateTask = %v", err)
		}
		e.clock.Advance(time.Hour + time.Second)
		second := e.newTask(owner, deviceNames(1))
		got, created, err := e.store.CreateTask(e.ctx, second, e.idem(owner, key, second.ID, "hash-2", time.Hour))
		if err != nil || !created {
			e.t.Fatalf("CreateTask with an expired key = created %v, %v; want created", created, err)
		}
		sameTask(e.t, "create with an expired key", got, second)

		// The new record replaced the expired one.
		got, created, err = e.store.CreateTask(e.ctx, e.newTask(owner, nil), e.idem(owner, key, "", "hash-2", time.Hour))
		if err != nil || created || got.ID != second.ID {
			e.t.Errorf("replay of the new record = %v, created %v, %v; want %s", got, created, err, second.ID)
		}
		_, _, err = e.store.CreateTask(e.ctx, e.newTask(owner, nil), e.idem(owner, key, "", "hash-1", time.Hour))
		wantCode(e.t, err, task.CodeIdempotencyMismatch, "the first body after the key was reused")
	})

	e.run("refuses an id that exists", func(e *env) {
		owner := e.id("owner")
		first := e.create(e.newTask(owner, deviceNames(2)))
		dup := e.newTask(e.id("owner"), deviceNames(4))
		dup.ID = first.ID
		key := e.id("key")
		_, _, err := e.store.CreateTask(e.ctx, dup, e.idem(dup.Owner, key, dup.ID, "hash", time.Hour))
		wantCode(e.t, err, task.CodeConflict, "CreateTask with an existing id")
		sameTask(e.t, "the first task after the refused create", e.get(first.ID), first)
		e.wantOwnerTasks(dup.Owner)

		// The refused create stored no idempotency record either.
		fresh := e.newTask(dup.Owner, deviceNames(1))
		if _, created, err := e.store.CreateTask(e.ctx, fresh, e.idem(dup.Owner, key, fresh.ID, "other-hash", time.Hour)); err != nil || !created {
			e.t.Errorf("CreateTask with the refused create's key = created %v, %v; want created", created, err)
		}
	})
}

func testGetTask(e *env) {
	e.run("round-trips every field of a large task", func(e *env) {
		ids := make([]string, task.MaxDevices)
		for i := range ids {
			ids[i] = fmt.Sprintf("i-%017x", i*7919)
		}
		want := e.newTask(e.id("owner"), ids)
		e.create(want)
		sameTask(e.t, "GetTask after create", e.get(want.ID), want)

		e.clock.Advance(time.Second)
		start := e.clock.Now()
		running := e.move(want, task.StatusRunning, 0)
		want.Status, want.Version, want.UpdatedAt, want.StartedAt, want.CurrentStep =
			task.StatusRunning, want.Version+1, start, new(start), "step running"
		sameTask(e.t, "Transition to running", running, want)
		sameTask(e.t, "GetTask after running", e.get(want.ID), want)

		e.clock.Advance(time.Second)
		end := e.clock.Now()
		result := &task.Result{SucceededDevices: ids[:3], FailedDevices: ids[3:4], CancelledDevices: []string{},
			Truncated: true, Reason: "two words"}
		tr, err := task.End(running, task.EventFinish, end, result, end.Add(48*time.Hour))
		if err != nil {
			e.t.Fatal(err)
		}
		tr.Step = "finished"
		done, err := e.store.Transition(e.ctx, tr)
		if err != nil {
			e.t.Fatalf("Transition to completed = %v", err)
		}
		want.Status, want.Version, want.UpdatedAt, want.CompletedAt, want.CurrentStep, want.Result, want.ExpiresAt =
			task.StatusCompleted, want.Version+1, end, new(end), "finished", result, end.Add(48*time.Hour)
		want.Counts.Cancelled, want.Counts.Pending = want.Counts.Pending, 0 // never started
		sameTask(e.t, "Transition to completed", done, want)
		sameTask(e.t, "GetTask after completed", e.get(want.ID), want)
	})

	e.run("unknown id is not found", func(e *env) {
		_, err := e.store.GetTask(e.ctx, e.id("missing"))
		wantCode(e.t, err, task.CodeNotFound, "GetTask of an unknown id")
	})

	e.run("an expired task is not found before it is deleted", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(1)))
		tk = e.move(tk, task.StatusCancelled, time.Hour)
		e.clock.Advance(time.Hour - time.Second)
		sameTask(e.t, "GetTask just before expiry", e.get(tk.ID), tk)
		e.clock.Advance(2 * time.Second)
		_, err := e.store.GetTask(e.ctx, tk.ID)
		wantCode(e.t, err, task.CodeNotFound, "GetTask after expiry")
		_, err = e.store.GetDevice(e.ctx, tk.ID, tk.Request.DeviceIDs[0])
		wantCode(e.t, err, task.CodeNotFound, "GetDevice of an expired task")
		_, err = e.store.ListDevices(e.ctx, tk.ID, task.DeviceQuery{})
		wantCode(e.t, err, task.CodeNotFound, "ListDevices of an expired task")
	})
}

// idem builds an idempotency record that expires ttl from the clock's time.
func (e *env) idem(owner, key, taskID, hash string, ttl time.Duration) *task.IdempotencyRecord {
	return &task.IdempotencyRecord{Owner: owner, Key: key, TaskID: taskID, RequestHash: hash, ExpiresAt: e.clock.Now().Add(ttl)}
}

// wantOwnerTasks fails the test unless owner has exactly the tasks ids, newest first.
func (e *env) wantOwnerTasks(owner string, ids ...string) {
	e.t.Helper()
	page, err := e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner, Limit: task.MaxPageSize})
	if err != nil {
		e.t.Fatalf("ListTasks(%s) = %v", owner, err)
	}
	if got := taskIDs(page.Tasks); !slices.Equal(got, ids) {
		e.t.Errorf("ListTasks(%s) = %v, want %v", owner, got, ids)
	}
}
