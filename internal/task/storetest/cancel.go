package storetest

import (
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// testDeviceCancel checks that a store applies a caller's cancel of one device (task.CancelDevice)
// as the device event table says, through Device.Apply, in the same atomic write as the
// counts and the version.
func testDeviceCancel(e *env) {
	e.run("a pending device is cancelled at once", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(3))), task.StatusRunning, 0)
		id := tk.Request.DeviceIDs[1]
		at := e.clock.Now().Add(time.Second)
		u := e.cancelDevice(tk.ID, id, at)
		got, applied := e.apply(tk.ID, u)
		if applied != 1 || got.Counts != (task.Counts{Total: 3, Pending: 2, Cancelled: 1}) {
			e.t.Errorf("cancel of a pending device: applied %d, counts %+v", applied, got.Counts)
		}
		checkVersion(e.t, "cancel of a pending device", tk.Version, got.Version, applied)
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: id, Status: task.DeviceCancelled, CompletedAt: new(at),
			CancelRequestedAt: new(at), Reason: u.Reason})
		// The runner's late report of a start changes nothing: the device never runs.
		if _, n := e.apply(tk.ID, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: at}); n != 0 {
			e.t.Errorf("a running report after the cancel applied %d", n)
		}
	})

	e.run("a running device is marked, then ended by its runner", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(2))), task.StatusRunning, 0)
		id := tk.Request.DeviceIDs[0]
		start := e.clock.Now()
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: start, Ref: "pgid:7"})
		before := e.get(tk.ID)
		asked := start.Add(time.Second)
		got, applied := e.apply(tk.ID, e.cancelDevice(tk.ID, id, asked))
		if applied != 1 || got.Counts != before.Counts {
			e.t.Errorf("cancel of a running device: applied %d, counts %+v, want %+v unchanged", applied, got.Counts, before.Counts)
		}
		checkVersion(e.t, "cancel of a running device", before.Version, got.Version, applied)
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: id, Status: task.DeviceRunning, StartedAt: new(start),
			Ref: "pgid:7", CancelRequestedAt: new(asked)})

		// Asking again changes nothing, not even the version.
		again := task.DeviceUpdate{DeviceID: id, Event: task.DeviceEventCancel, Status: task.DeviceRunning, At: asked.Add(time.Second)}
		if got2, n := e.apply(tk.ID, again); n != 0 || got2.Version != got.Version {
			e.t.Errorf("a repeated cancel applied %d, version %d → %d", n, got.Version, got2.Version)
		}
		stopped := asked.Add(2 * time.Second)
		got, applied = e.apply(tk.ID, task.DeviceUpdate{DeviceID: id, Status: task.DeviceCancelled, At: stopped, Reason: "stopped"})
		if applied != 1 || got.Counts != (task.Counts{Total: 2, Pending: 1, Cancelled: 1}) {
			e.t.Errorf("the runner's report of the stop: applied %d, counts %+v", applied, got.Counts)
		}
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: id, Status: task.DeviceCancelled, StartedAt: new(start),
			CompletedAt: new(stopped), Ref: "pgid:7", CancelRequestedAt: new(asked), Reason: "stopped"})
	})

	e.run("an ended device or task takes no cancel", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(2))), task.StatusRunning, 0)
		done, pending := tk.Request.DeviceIDs[0], tk.Request.DeviceIDs[1]
		at := e.clock.Now()
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: done, Status: task.DeviceSucceeded, At: at})
		d, err := e.store.GetDevice(e.ctx, tk.ID, done)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := task.CancelDevice(e.get(tk.ID), d, at); !task.IsCode(err, task.CodeConflict) {
			e.t.Errorf("CancelDevice of a succeeded device = %v, want a conflict", err)
		}
		// A forged update is refused by the store's Apply all the same.
		forged := []task.DeviceUpdate{
			{DeviceID: done, Event: task.DeviceEventCancel, Status: task.DeviceCancelled, At: at},
			{DeviceID: pending, Event: task.DeviceEventCancel, Status: task.DeviceSucceeded, At: at},
			{DeviceID: pending, Event: task.DeviceEvent("pause"), Status: task.DevicePending, At: at},
		}
		before := e.get(tk.ID)
		if got, n := e.apply(tk.ID, forged...); n != 0 || got.Version != before.Version {
			e.t.Errorf("forged cancels applied %d, version %d → %d", n, before.Version, got.Version)
		}
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: pending, Status: task.DevicePending})

		u := e.cancelDevice(tk.ID, pending, at)
		ended := e.move(e.get(tk.ID), task.StatusCompleted, time.Hour)
		if got, n := e.apply(tk.ID, u); n != 0 || got.Version != ended.Version || got.Counts != ended.Counts {
			e.t.Errorf("a cancel of a device of a completed task applied %d: %+v", n, got.Counts)
		}
	})

	e.run("a running device's output follows what it writes", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(1))), task.StatusRunning, 0)
		id := tk.Request.DeviceIDs[0]
		at := e.clock.Now()
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: at, Ref: "pgid:9"})
		before := e.get(tk.ID)
		got, n := e.apply(tk.ID, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, Stdout: "line 1\n", Stderr: "warn\n"})
		if n != 1 || got.Counts != before.Counts {
			e.t.Errorf("a running device's output: applied %d, counts %+v", n, got.Counts)
		}
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: id, Status: task.DeviceRunning, StartedAt: new(at),
			Ref: "pgid:9", Stdout: "line 1\n", Stderr: "warn\n"})
	})
}

// cancelDevice reads a device of a task and builds its cancel at time at, failing the test
// when CancelDevice refuses it.
func (e *env) cancelDevice(taskID, deviceID string, at time.Time) task.DeviceUpdate {
	e.t.Helper()
	d, err := e.store.GetDevice(e.ctx, taskID, deviceID)
	if err != nil {
		e.t.Fatalf("GetDevice(%s, %s) = %v", taskID, deviceID, err)
	}
	u, err := task.CancelDevice(e.get(taskID), d, at)
	if err != nil {
		e.t.Fatalf("CancelDevice(%s) = %v", deviceID, err)
	}
	return u
}

// testDeviceCancelConcurrency races 50 device cancels, a cancel of the task and the devices'
// own completions, as the engine makes them (each writer reads, decides with the domain's
// constructors and writes conditionally, deciding again when it loses), and checks that the
// counts add up all along and at the end match the devices one by one.
func testDeviceCancelConcurrency(e *env) {
	e.run("50 device cancels, a task cancel and completions", func(e *env) {
		const devices, running, cancels = 120, 80, 50
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(devices))), task.StatusRunning, 0)
		ids := tk.Request.DeviceIDs
		at := e.clock.Now()
		var starts []task.DeviceUpdate
		for _, id := range ids[:running] {
			starts = append(starts, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: at})
		}
		e.apply(tk.ID, starts...)

		stop := make(chan struct{})
		var watchers sync.WaitGroup
		watchers.Go(func() { e.watchTask(tk, stop) })

		// The cancelled devices straddle the running and the pending ones.
		targets := ids[running-cancels/2 : running+cancels/2]
		var wg sync.WaitGroup
		var mu sync.Mutex
		refused := map[string]bool{}
		for _, id := range targets {
			wg.Go(func() {
				for attempt := 0; attempt < 20; attempt++ {
					tk, err := e.store.GetTask(e.ctx, tk.ID)
					if err != nil {
						e.t.Errorf("GetTask = %v", err)
						return
					}
					d, err := e.store.GetDevice(e.ctx, tk.ID, id)
					if err != nil {
						e.t.Errorf("GetDevice(%s) = %v", id, err)
						return
					}
					u, err := task.CancelDevice(tk, d, at)
					if err != nil || (d.Status == task.DeviceRunning && d.CancelRequestedAt != nil) {
						// It ended first, or its task did, or it is marked already: all fine.
						mu.Lock()
						refused[id] = err != nil
						mu.Unlock()
						return
					}
					got, n, err := e.store.ApplyDeviceUpdates(e.ctx, tk.ID, []task.DeviceUpdate{u})
					if err != nil {
						e.t.Errorf("cancel of %s: %v", id, err)
						return
					}
					if !countsConsistent(got.Counts) {
						e.t.Errorf("cancel of %s: counts %+v do not add up", id, got.Counts)
					}
					if n == 1 {
						return
					}
				}
				e.t.Errorf("the cancel of %s never applied nor was refused", id)
			})
		}
		// The devices that were running finish on their own, some of them twice.
		for i, id := range ids[:running] {
			wg.Go(func() {
				end := []task.DeviceStatus{task.DeviceSucceeded, task.DeviceFailed}[i%2]
				for range 1 + i%2 {
					got, _, err := e.store.ApplyDeviceUpdates(e.ctx, tk.ID, []task.DeviceUpdate{{DeviceID: id, Status: end, At: at}})
					if err != nil {
						e.t.Errorf("completion of %s: %v", id, err)
						return
					}
					if !countsConsistent(got.Counts) {
						e.t.Errorf("completion of %s: counts %+v do not add up", id, got.Counts)
					}
				}
			})
		}
		// The task is cancelled meanwhile; its write loses to device writes and decides again.
		wg.Go(func() {
			for attempt := 0; attempt < 200; attempt++ {
				cur, err := e.store.GetTask(e.ctx, tk.ID)
				if err != nil {
					e.t.Errorf("GetTask = %v", err)
					return
				}
				tr, err := task.Cancel(cur, at)
				if err != nil {
					e.t.Errorf("Cancel(%s) = %v", cur.Status, err)
					return
				}
				if _, err := e.store.Transition(e.ctx, tr); err == nil {
					return
				} else if !task.IsCode(err, task.CodeConflict) {
					e.t.Errorf("Transition to cancelling = %v", err)
					return
				}
			}
			e.t.Errorf("the task cancel lost every race")
		})
		wg.Wait()

		// The runner stops what is left, and the task ends with the counts as they are.
		var rest []task.DeviceUpdate
		for _, d := range e.allDevices(tk.ID) {
			if !d.Status.Terminal() {
				rest = append(rest, task.DeviceUpdate{DeviceID: d.ID, Status: task.DeviceCancelled, At: at})
			}
		}
		e.apply(tk.ID, rest...)
		cur := e.get(tk.ID)
		if cur.Status != task.StatusCancelling {
			e.t.Fatalf("the task is %s after its cancel, want cancelling", cur.Status)
		}
		tr, err := task.End(cur, task.EventFinish, at, &task.Result{Reason: "cancelled"}, at.Add(time.Hour))
		if err != nil {
			e.t.Fatal(err)
		}
		final, err := e.store.Transition(e.ctx, tr)
		if err != nil {
			e.t.Fatalf("Transition to cancelled = %v", err)
		}
		close(stop)
		watchers.Wait()

		recount := task.Counts{Total: devices}
		for i, d := range e.allDevices(tk.ID) {
			recount.Add(d.Status, 1)
			cancelled := i >= running-cancels/2 && i < running+cancels/2
			switch {
			case i >= running && d.Status != task.DeviceCancelled:
				e.t.Errorf("pending device %s is %s, want cancelled", d.ID, d.Status)
			case i >= running && cancelled && (d.CancelRequestedAt == nil || refused[d.ID]):
				e.t.Errorf("pending device %s was cancelled without its own cancel: %+v", d.ID, d)
			case i < running && d.Status != task.DeviceSucceeded && d.Status != task.DeviceFailed && d.Status != task.DeviceCancelled:
				e.t.Errorf("running device %s ended %s", d.ID, d.Status)
			}
		}
		if final.Status != task.StatusCancelled || final.Counts != recount || !countsConsistent(final.Counts) {
			e.t.Errorf("final %s counts %+v; the devices count %+v", final.Status, final.Counts, recount)
		}
	})
}
