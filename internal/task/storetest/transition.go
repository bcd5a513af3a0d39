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
		got, err := e.store.Transition(e.ctx, task.Transition{TaskID: want.ID, From: task.StatusPending,
			Version: want.Version, To: task.StatusRunning, At: at, Step: "running on devices"})
		if err != nil {
			e.t.Fatalf("Transition = %v", err)
		}
		want.Status, want.Version, want.UpdatedAt, want.StartedAt, want.CurrentStep =
			task.StatusRunning, want.Version+1, at, new(at), "running on devices"
		sameTask(e.t, "returned task", got, want)
		sameTask(e.t, "GetTask", e.get(want.ID), want)

		e.clock.Advance(time.Second)
		at = e.clock.Now()
		got, err = e.store.Transition(e.ctx, task.Transition{TaskID: want.ID, From: task.StatusRunning,
			Version: want.Version, To: task.StatusCancelling, At: at})
		if err != nil {
			e.t.Fatalf("Transition to cancelling = %v", err)
		}
		// An empty step keeps the current one; StartedAt stays as the start.
		want.Status, want.Version, want.UpdatedAt = task.StatusCancelling, want.Version+1, at
		sameTask(e.t, "cancelling task", got, want)
		sameTask(e.t, "GetTask of the cancelling task", e.get(want.ID), want)
	})

	e.run("a terminal transition stores completedAt, result and expiry", func(e *env) {
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
				tr := task.Transition{TaskID: want.ID, From: want.Status, Version: want.Version, To: to, At: at, Step: "to " + string(to)}
				if to.Terminal() {
					tr.Result = &task.Result{SucceededDevices: []string{}, FailedDevices: want.Request.DeviceIDs[:1],
						CancelledDevices: want.Request.DeviceIDs[1:], Reason: "because " + string(to)}
					tr.ExpiresAt = at.Add(24 * time.Hour)
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
				}
				sameTask(e.t, "returned task "+string(to), got, want)
				sameTask(e.t, "GetTask "+string(to), e.get(want.ID), want)
			}
		}
	})

	e.run("refuses a stale status or version and writes nothing", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(2)))
		tk = e.move(tk, task.StatusRunning, 0)
		for _, tr := range []task.Transition{
			{From: task.StatusPending, Version: tk.Version, To: task.StatusCancelled},
			{From: task.StatusRunning, Version: tk.Version - 1, To: task.StatusCompleted},
			{From: task.StatusRunning, Version: tk.Version + 1, To: task.StatusCompleted},
			{From: task.StatusCancelling, Version: tk.Version, To: task.StatusCancelled},
		} {
			tr.TaskID, tr.At, tr.Step = tk.ID, e.clock.Now().Add(time.Hour), "must not be written"
			tr.Result, tr.ExpiresAt = &task.Result{Reason: "must not be written"}, e.clock.Now().Add(time.Hour)
			_, err := e.store.Transition(e.ctx, tr)
			wantCode(e.t, err, task.ErrConflict, "Transition from "+string(tr.From)+" at a wrong version or status")
			sameTask(e.t, "task after a refused transition", e.get(tk.ID), tk)
		}
	})

	e.run("unknown task is not found", func(e *env) {
		_, err := e.store.Transition(e.ctx, task.Transition{TaskID: e.id("missing"), From: task.StatusPending,
			Version: 1, To: task.StatusRunning, At: e.clock.Now()})
		wantCode(e.t, err, task.ErrNotFound, "Transition of an unknown task")
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
				_, errs[i] = e.store.Transition(e.ctx, task.Transition{TaskID: tk.ID, From: task.StatusPending,
					Version: tk.Version, To: to, At: e.clock.Now()})
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !task.IsCode(err, task.ErrConflict):
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
