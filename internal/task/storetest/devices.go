package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testApplyDeviceUpdates(e *env) {
	e.run("a device keeps every field it is given", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(3))), task.StatusRunning, 0)
		d0, d1 := tk.Request.DeviceIDs[0], tk.Request.DeviceIDs[1]
		t1 := e.clock.Now().Add(time.Second)
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d0, Status: task.DeviceRunning, At: t1, Ref: "cmd-1"})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d0, Status: task.DeviceRunning, StartedAt: new(t1), Ref: "cmd-1"})

		t2 := t1.Add(time.Second)
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d0, Status: task.DeviceFailed, At: t2, ExitCode: new(3),
			Stdout: "out\nput", Stderr: "err", StdoutTruncated: true, StderrTruncated: true, Reason: "the script exited 3"})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d0, Status: task.DeviceFailed, ExitCode: new(3),
			Stdout: "out\nput", Stderr: "err", StdoutTruncated: true, StderrTruncated: true, StartedAt: new(t1),
			CompletedAt: new(t2), Reason: "the script exited 3", Ref: "cmd-1"})

		// Straight from pending to a terminal state, with an exit code of zero.
		t3 := t2.Add(time.Second)
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d1, Status: task.DeviceSucceeded, At: t3, ExitCode: new(0), Ref: "cmd-2"})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d1, Status: task.DeviceSucceeded, ExitCode: new(0),
			CompletedAt: new(t3), Ref: "cmd-2"})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: tk.Request.DeviceIDs[2], Status: task.DevicePending})
	})

	e.run("applies forward moves once and ignores the rest", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(6))), task.StatusRunning, 0)
		d := tk.Request.DeviceIDs
		at := e.clock.Now()
		up := func(i int, s task.DeviceStatus) task.DeviceUpdate {
			return task.DeviceUpdate{DeviceID: d[i], Status: s, At: at}
		}
		steps := []struct {
			name    string
			updates []task.DeviceUpdate
			applied int
		}{
			{"running", []task.DeviceUpdate{up(0, task.DeviceRunning)}, 1},
			{"duplicate in one batch", []task.DeviceUpdate{up(1, task.DeviceRunning), up(1, task.DeviceRunning)}, 1},
			{"duplicate of an applied update", []task.DeviceUpdate{up(0, task.DeviceRunning)}, 0},
			{"terminal", []task.DeviceUpdate{up(0, task.DeviceSucceeded)}, 1},
			{"terminal three times", []task.DeviceUpdate{up(1, task.DeviceFailed), up(1, task.DeviceFailed), up(1, task.DeviceFailed)}, 1},
			{"running after terminal", []task.DeviceUpdate{up(0, task.DeviceRunning)}, 0},
			{"another terminal after terminal", []task.DeviceUpdate{up(1, task.DeviceSucceeded)}, 0},
			{"terminal then running in one batch", []task.DeviceUpdate{up(2, task.DeviceTimedOut), up(2, task.DeviceRunning)}, 1},
			{"back to pending", []task.DeviceUpdate{up(3, task.DeviceRunning), up(3, task.DevicePending)}, 1},
			{"unknown device", []task.DeviceUpdate{{DeviceID: e.id("ghost"), Status: task.DeviceRunning, At: at}}, 0},
			{"unknown status", []task.DeviceUpdate{up(4, task.DeviceStatus("lost"))}, 0},
			{"nothing", nil, 0},
			{"a mixed batch", []task.DeviceUpdate{up(4, task.DeviceRunning), up(5, task.DeviceUndeliverable),
				up(4, task.DeviceCancelled), up(0, task.DeviceFailed), {DeviceID: e.id("ghost"), Status: task.DeviceFailed}}, 3},
		}
		model := map[string]task.DeviceStatus{}
		for _, st := range steps {
			before := e.get(tk.ID)
			got, applied := e.apply(tk.ID, st.updates...)
			if applied != st.applied {
				e.t.Errorf("%s: applied %d, want %d", st.name, applied, st.applied)
			}
			for _, u := range st.updates {
				if cur, member := modelStatus(model, d, u.DeviceID); member && cur.CanMove(u.Status) {
					model[u.DeviceID] = u.Status
				}
			}
			want := modelCounts(model, d)
			if got.Counts != want {
				e.t.Errorf("%s: counts %+v, want %+v", st.name, got.Counts, want)
			}
			checkVersion(e.t, st.name, before.Version, got.Version, applied)
			sameTask(e.t, st.name+": GetTask after the updates", e.get(tk.ID), got)
			for _, id := range d {
				want, _ := modelStatus(model, d, id)
				if dev, err := e.store.GetDevice(e.ctx, tk.ID, id); err != nil || dev.Status != want {
					e.t.Errorf("%s: device %s = %+v, %v; want %s", st.name, id, dev, err, want)
				}
			}
		}
		_, err := e.store.GetDevice(e.ctx, tk.ID, e.id("ghost"))
		wantCode(e.t, err, task.CodeNotFound, "GetDevice of a device an update named but the task does not have")
	})

	e.run("a cancelling task takes updates, a finished one does not", func(e *env) {
		tk := e.move(e.move(e.create(e.newTask(e.id("owner"), deviceNames(3))), task.StatusRunning, 0), task.StatusCancelling, 0)
		d := tk.Request.DeviceIDs
		tk, n := e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceCancelled, At: e.clock.Now()})
		if n != 1 || tk.Counts.Cancelled != 1 {
			e.t.Fatalf("update of a cancelling task: applied %d, counts %+v", n, tk.Counts)
		}
		tk = e.move(tk, task.StatusCancelled, time.Hour)
		got, n := e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[1], Status: task.DeviceSucceeded, At: e.clock.Now()},
			task.DeviceUpdate{DeviceID: d[2], Status: task.DeviceRunning, At: e.clock.Now()})
		if n != 0 {
			e.t.Errorf("updates to a cancelled task: applied %d, want 0", n)
		}
		sameTask(e.t, "the cancelled task after ignored updates", got, tk)
		sameTask(e.t, "GetTask of the cancelled task", e.get(tk.ID), tk)
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d[1], Status: task.DeviceCancelled, Reason: tk.Unstarted(d[1]).Reason})
	})

	e.run("output is cut at the inline limits on a UTF-8 boundary and flagged", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(3))), task.StatusRunning, 0)
		d := tk.Request.DeviceIDs
		at := e.clock.Now()
		// "é" is two bytes and the text starts with one byte, so each limit falls inside one.
		long := "x" + strings.Repeat("é", task.StdoutInlineLimit)
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceSucceeded, At: at, ExitCode: new(0),
			Stdout: long, Stderr: long})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d[0], Status: task.DeviceSucceeded, ExitCode: new(0),
			CompletedAt: new(at), Stdout: long[:task.StdoutInlineLimit-1], StdoutTruncated: true,
			Stderr: long[:task.StderrInlineLimit-1], StderrTruncated: true})

		// A running device's partial output is replaced, flags and all, by its final output.
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[1], Status: task.DeviceRunning, At: at,
			Stdout: "partial", StdoutTruncated: true, Stderr: "warn", StderrTruncated: true})
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[1], Status: task.DeviceFailed, At: at, ExitCode: new(1),
			Stdout: "partial and the rest", Stderr: "warn"})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d[1], Status: task.DeviceFailed, ExitCode: new(1),
			StartedAt: new(at), CompletedAt: new(at), Stdout: "partial and the rest", Stderr: "warn"})

		// Output that fits, flagged by the runner that cut it, keeps the runner's flag.
		e.apply(tk.ID, task.DeviceUpdate{DeviceID: d[2], Status: task.DeviceFailed, At: at, Stdout: "cut by SSM", StdoutTruncated: true})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d[2], Status: task.DeviceFailed, CompletedAt: new(at),
			Stdout: "cut by SSM", StdoutTruncated: true})
	})

	e.run("a longer output supersedes a shorter one on an ended device", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(2))), task.StatusRunning, 0)
		d := tk.Request.DeviceIDs
		at := e.clock.Now()
		short := task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceFailed, At: at, ExitCode: new(2),
			Stdout: "the first 2,500 char", StdoutTruncated: true, Stderr: "err", Reason: "exited 2", Ref: "cmd-1"}
		tk, _ = e.apply(tk.ID, short)
		want := &task.Device{TaskID: tk.ID, ID: d[0], Status: task.DeviceFailed, ExitCode: new(2), CompletedAt: new(at),
			Stdout: short.Stdout, StdoutTruncated: true, Stderr: "err", Reason: "exited 2", Ref: "cmd-1"}

		// Another status, or output no longer than what is stored, changes nothing.
		later := at.Add(time.Minute)
		for _, u := range []task.DeviceUpdate{
			{DeviceID: d[0], Status: task.DeviceSucceeded, At: later, Stdout: "a longer output of another status"},
			{DeviceID: d[0], Status: task.DeviceFailed, At: later, Stdout: "shorter"},
			{DeviceID: d[0], Status: task.DeviceFailed, At: later, Stdout: "THE FIRST 2,500 CHAR"},
		} {
			got, n := e.apply(tk.ID, u)
			if n != 0 {
				e.t.Errorf("update %+v applied to an ended device", u)
			}
			sameTask(e.t, "the task after an ignored update", got, tk)
			e.wantDevice(tk.ID, want)
		}

		// The full output replaces the short copy and nothing else; the counts stay.
		full := task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceFailed, At: later, ExitCode: new(9),
			Stdout: "the first 2,500 characters and the rest", Stderr: "e", Reason: "other", Ref: "cmd-2"}
		got, n := e.apply(tk.ID, full)
		if n != 1 || got.Counts != tk.Counts {
			e.t.Errorf("the longer output: applied %d, counts %+v; want 1 applied and counts %+v", n, got.Counts, tk.Counts)
		}
		checkVersion(e.t, "the longer output", tk.Version, got.Version, n)
		want.Stdout, want.StdoutTruncated = full.Stdout, false
		e.wantDevice(tk.ID, want)
	})

	e.run("an ended task still takes a longer output of an ended device, and nothing else", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(3))), task.StatusRunning, 0)
		d := tk.Request.DeviceIDs
		at := e.clock.Now()
		short := task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceSucceeded, At: at, ExitCode: new(0),
			Stdout: "the first 2,500 char", StdoutTruncated: true, Ref: "cmd-1"}
		tk, _ = e.apply(tk.ID, short, task.DeviceUpdate{DeviceID: d[1], Status: task.DeviceRunning, At: at})
		tk = e.move(tk, task.StatusCompleted, time.Hour)
		want := &task.Device{TaskID: tk.ID, ID: d[0], Status: task.DeviceSucceeded, ExitCode: new(0), CompletedAt: new(at),
			Stdout: short.Stdout, StdoutTruncated: true, Ref: "cmd-1"}

		later := at.Add(time.Minute)
		for _, u := range []task.DeviceUpdate{
			// A move, of an ended device or of one that was still running, or of one that never
			// started, and a copy no longer than what is stored.
			{DeviceID: d[0], Status: task.DeviceFailed, At: later, Stdout: "a longer output of another status"},
			{DeviceID: d[1], Status: task.DeviceSucceeded, At: later, Stdout: "finished after the task"},
			{DeviceID: d[2], Status: task.DeviceCancelled, At: later, Stdout: "never started"},
			{DeviceID: d[0], Status: task.DeviceSucceeded, At: later, Stdout: "shorter"},
		} {
			got, n := e.apply(tk.ID, u)
			if n != 0 {
				e.t.Errorf("update %+v applied to an ended task", u)
			}
			sameTask(e.t, "the ended task after an ignored update", got, tk)
		}
		e.wantDevice(tk.ID, want)
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: d[1], Status: task.DeviceRunning, StartedAt: new(at)})

		full := task.DeviceUpdate{DeviceID: d[0], Status: task.DeviceSucceeded, At: later, ExitCode: new(0),
			Stdout: "the first 2,500 characters and the rest", Stderr: "and a warning", StderrTruncated: true}
		got, n := e.apply(tk.ID, full)
		if n != 1 {
			e.t.Errorf("the longer output of an ended task's device: applied %d, want 1", n)
		}
		sameTask(e.t, "the ended task after a longer output", got, tk)
		if stored, err := e.store.GetTask(e.ctx, tk.ID); err != nil {
			e.t.Fatal(err)
		} else {
			sameTask(e.t, "the ended task as stored", stored, tk)
		}
		want.Stdout, want.StdoutTruncated = full.Stdout, false
		want.Stderr, want.StderrTruncated = full.Stderr, true
		e.wantDevice(tk.ID, want)
	})

	e.run("unknown task is not found", func(e *env) {
		_, _, err := e.store.ApplyDeviceUpdates(e.ctx, e.id("missing"),
			[]task.DeviceUpdate{{DeviceID: "dev-00000", Status: task.DeviceRunning, At: e.clock.Now()}})
		wantCode(e.t, err, task.CodeNotFound, "ApplyDeviceUpdates to an unknown task")
	})
}

// checkVersion fails the test unless the version rose when something was applied, by no more
// than the number applied, and stayed put otherwise.
func checkVersion(t *testing.T, what string, before, after int64, applied int) {
	t.Helper()
	switch {
	case applied == 0 && after != before:
		t.Errorf("%s: version went from %d to %d although nothing was applied", what, before, after)
	case applied > 0 && (after <= before || after > before+int64(applied)):
		t.Errorf("%s: version went from %d to %d with %d updates applied", what, before, after, applied)
	}
}

// modelStatus is a device's status in the test's own model, and whether it is in the task.
func modelStatus(model map[string]task.DeviceStatus, ids []string, id string) (task.DeviceStatus, bool) {
	for _, d := range ids {
		if d == id {
			if s, ok := model[id]; ok {
				return s, true
			}
			return task.DevicePending, true
		}
	}
	return "", false
}

func modelCounts(model map[string]task.DeviceStatus, ids []string) task.Counts {
	c := task.Counts{Total: len(ids)}
	for _, id := range ids {
		s, ok := model[id]
		if !ok {
			s = task.DevicePending
		}
		c.Add(s, 1)
	}
	return c
}

// wantDevice fails the test unless GetDevice returns want.
func (e *env) wantDevice(taskID string, want *task.Device) {
	e.t.Helper()
	got, err := e.store.GetDevice(e.ctx, taskID, want.ID)
	if err != nil {
		e.t.Fatalf("GetDevice(%s, %s) = %v", taskID, want.ID, err)
	}
	sameDevice(e.t, "GetDevice", got, want)
}
