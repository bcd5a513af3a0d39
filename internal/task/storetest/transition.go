package storetest

import (
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testTransition(e *env) {
	e.run("applies when status and version match", func(e *env) {
		want := e.create(e.newTask(e.id("owner"), deviceNames(3)))
		e.clock.Advance(time.Second)
		at := e.clock.Now().Add(-time.Millisecond) // the transition's own time, not the store's
		tr, err := task.Dispatch(want, at)
		if err != nil {
			e.t.Fatal(err)
		}
		tr.Step = "running on devices"
		got, err := e.store.Transition(e.ctx, tr)
		if err != nil {
			e.t.Fatalf("Transition = %v", err)
		}
		want.Status, want.Version, want.UpdatedAt, want.StartedAt, want.CurrentStep =
			task.StatusRunning, want.Version+1, at, new(at), "running on devices"
		sameTask(e.t, "returned task", got, want)
		sameTask(e.t, "GetTask", e.get(want.ID), want)

		e.clock.Advance(time.Second)
		at = e.clock.Now()
		tr, err = task.Cancel(got, at)
		if err != nil {
			e.t.Fatal(err)
		}
		got, err = e.store.Transition(e.ctx, tr)
		if err != nil {
			e.t.Fatalf("Transition to cancelling = %v", err)
		}
		// An empty step keeps the current one; StartedAt stays as the start.
		want.Status, want.Version, want.UpdatedAt = task.StatusCancelling, want.Version+1, at
		sameTask(e.t, "cancelling task", got, want)
		sameTask(e.t, "GetTask of the cancelling task", e.get(want.ID), want)
	})

	e.run("a step writes the step alone and keeps startedAt", func(e *env) {
		want := e.move(e.create(e.newTask(e.id("owner"), deviceNames(2))), task.StatusRunning, 0)
		e.clock.Advance(time.Second)
		at := e.clock.Now()
		tr, err := task.Step(want, "waiting for a free slot", at)
		if err != nil {
			e.t.Fatal(err)
		}
		got, err := e.store.Transition(e.ctx, tr)
		if err != nil {
			e.t.Fatalf("Transition of a step = %v", err)
		}
		want.Version, want.UpdatedAt, want.CurrentStep = want.Version+1, at, "waiting for a free slot"
		sameTask(e.t, "task after a step", got, want)
		sameTask(e.t, "GetTask after a step", e.get(want.ID), want)
	})

	e.run("a terminal transition stores completedAt, result, counts and expiry", func(e *env) {
		for _, path := range [][]task.Status{
			{task.StatusPending, task.StatusCancelled},
			{task.StatusPending, task.StatusFailed},
			{task.StatusPending, task.StatusRunning, task.StatusTimedOut},
			{task.StatusPending, task.StatusRunning, task.StatusCancelling, task.StatusCancelled},
		} {
			want := e.create(e.newTask(e.id("owner"), deviceNames(2)))
			for _, to := range path[1:] {
				e.clock.Advance(time.Second)
				at := e.clock.Now()
				tr, err := Move(want, to, at, at.Add(24*time.Hour))
				if err != nil {
					e.t.Fatal(err)
				}
				tr.Step = "to " + string(to)
				if to.Terminal() {
					tr.Result = &task.Result{SucceededDevices: []string{}, FailedDevices: want.Request.DeviceIDs[:1],
						CancelledDevices: want.Request.DeviceIDs[1:], Reason: "because " + string(to)}
				}
				got, err := e.store.Transition(e.ctx, tr)
				if err != nil {
					e.t.Fatalf("Transition %s→%s = %v", want.Status, to, err)
				}
				want.Status, want.Version, want.UpdatedAt, want.CurrentStep = to, want.Version+1, at, tr.Step
				if to == task.StatusRunning {
					want.StartedAt = new(at)
				}
				if to.Terminal() {
					want.CompletedAt, want.Result, want.ExpiresAt = new(at), tr.Result, tr.ExpiresAt
					want.Counts.Cancelled, want.Counts.Pending = want.Counts.Cancelled+want.Counts.Pending, 0
				}
				sameTask(e.t, "returned task "+string(to), got, want)
				sameTask(e.t, "GetTask "+string(to), e.get(want.ID), want)
			}
		}
	})

	e.run("refuses a stale status or version and writes nothing", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(2)))
		tk = e.move(tk, task.StatusRunning, 0)
		at := e.clock.Now().Add(time.Hour)
		pending := *tk
		pending.Status = task.StatusPending
		cancelling := *tk
		cancelling.Status = task.StatusCancelling
		stale, _ := task.End(&pending, task.EventCancel, at, &task.Result{Reason: "must not be written"}, at)
		wrongStatus, _ := task.End(&cancelling, task.EventFinish, at, &task.Result{Reason: "must not be written"}, at)
		finish, _ := task.End(tk, task.EventFinish, at, &task.Result{Reason: "must not be written"}, at)
		older, newer := finish, finish
		older.Version, newer.Version = tk.Version-1, tk.Version+1
		for _, tr := range []task.Transition{stale, older, newer, wrongStatus} {
			tr.Step = "must not be written"
			_, err := e.store.Transition(e.ctx, tr)
			wantCode(e.t, err, task.CodeConflict, "Transition from "+string(tr.From)+" at a wrong version or status")
			sameTask(e.t, "task after a refused transition", e.get(tk.ID), tk)
		}
	})

	e.run("refuses every transition the state machine does not allow", func(e *env) {
		// One task in each status; every (from, event, to) that the table does not allow is
		// offered at the task's exact status and version, so only the table can refuse it.
		at := e.clock.Now().Add(time.Hour)
		for _, from := range task.Statuses() {
			tk := e.reach(from)
			for _, ev := range task.Events() {
				next, nerr := from.Next(ev)
				for _, to := range task.Statuses() {
					if nerr == nil && to == next {
						continue
					}
					tr := task.Transition{TaskID: tk.ID, From: from, Version: tk.Version, Event: ev, To: to, At: at,
						Step: "must not be written", Result: &task.Result{Reason: "must not be written"}, ExpiresAt: at,
						Counts: task.Counts{Total: tk.Counts.Total, Failed: tk.Counts.Total}}
					_, err := e.store.Transition(e.ctx, tr)
					wantCode(e.t, err, task.CodeConflict, "Transition "+string(from)+" --"+string(ev)+"--> "+string(to))
				}
			}
			sameTask(e.t, "a "+string(from)+" task after every illegal transition", e.get(tk.ID), tk)
		}
	})

	e.run("unknown task is not found", func(e *env) {
		missing := e.newTask(e.id("owner"), deviceNames(1))
		tr, err := task.Dispatch(missing, e.clock.Now())
		if err != nil {
			e.t.Fatal(err)
		}
		_, err = e.store.Transition(e.ctx, tr)
		wantCode(e.t, err, task.CodeNotFound, "Transition of an unknown task")
	})

	e.run("one of many racing writers wins", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(2)))
		const writers = 8
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				to := task.StatusRunning
				if i%2 == 1 {
					to = task.StatusCancelled
				}
				tr, err := Move(tk, to, e.clock.Now(), time.Time{})
				if err == nil {
					_, err = e.store.Transition(e.ctx, tr)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !task.IsCode(err, task.CodeConflict):
				e.t.Errorf("a losing writer got %v, want a conflict", err)
			}
		}
		if won != 1 {
			e.t.Errorf("%d writers won the same transition, want exactly 1", won)
		}
		if got := e.get(tk.ID); got.Version != tk.Version+1 {
			e.t.Errorf("version after the race = %d, want %d", got.Version, tk.Version+1)
		}
	})
}

// reach creates a task and moves it to status s along the shortest legal path.
func (e *env) reach(s task.Status) *task.Task {
	e.t.Helper()
	paths := map[task.Status][]task.Status{
		task.StatusPending:    nil,
		task.StatusRunning:    {task.StatusRunning},
		task.StatusCancelling: {task.StatusRunning, task.StatusCancelling},
		task.StatusCompleted:  {task.StatusRunning, task.StatusCompleted},
		task.StatusFailed:     {task.StatusFailed},
		task.StatusTimedOut:   {task.StatusRunning, task.StatusTimedOut},
		task.StatusCancelled:  {task.StatusCancelled},
	}
	path, ok := paths[s]
	if !ok {
		e.t.Fatalf("no path to status %s", s)
	}
	tk := e.create(e.newTask(e.id("owner"), deviceNames(2)))
	for _, to := range path {
		tk = e.move(tk, to, time.Hour)
	}
	return tk
}
func testUnstartedDevices(e *env) {
	e.run("devices that never started are cancelled once their task ends", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(4)))
		d := tk.Request.DeviceIDs
		tk = e.move(tk, task.StatusRunning, 0)
		tk, _ = e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceSucceeded, At: e.clock.Now()},
			task.DeviceUpdate{DeviceID: d[1], Status: task.DeviceFailed, At: e.clock.Now(), ExitCode: new(2)})
		if page := e.listDevices(tk.ID, task.DeviceQuery{Statuses: []task.DeviceStatus{task.DevicePending}}); len(page) != 2 {
			e.t.Fatalf("%d pending devices before the end, want 2", len(page))
		}
		done := e.move(tk, task.StatusFailed, time.Hour)
		want := task.Counts{Total: 4, Succeeded: 1, Failed: 1, Cancelled: 2}
		if done.Counts != want || e.get(tk.ID).Counts != want {
			e.t.Fatalf("counts after the end = %+v, want %+v", done.Counts, want)
		}
		if got := e.listDevices(tk.ID, task.DeviceQuery{Statuses: []task.DeviceStatus{task.DevicePending}}); len(got) != 0 {
			e.t.Errorf("%d devices still pending after the end", len(got))
		}
		got := e.listDevices(tk.ID, task.DeviceQuery{Statuses: []task.DeviceStatus{task.DeviceCancelled}})
		if len(got) != 2 || got[0].ID != d[2] || got[1].ID != d[3] || got[0].Reason == "" {
			e.t.Fatalf("cancelled devices = %+v, want %s and %s with a reason", got, d[2], d[3])
		}
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d[3], Status: task.DeviceCancelled, Reason: got[1].Reason})
	})
}

// listDevices lists every device of a task that q selects, across pages.
func (e *env) listDevices(taskID string, q task.DeviceQuery) []*task.Device {
	e.t.Helper()
	var all []*task.Device
	for {
		page, err := e.store.ListDevices(e.ctx, taskID, q)
		if err != nil {
			e.t.Fatalf("ListDevices = %v", err)
		}
		all = append(all, page.Devices...)
		if q.Cursor = page.Next; q.Cursor == "" {
			return all
		}
	}
}
