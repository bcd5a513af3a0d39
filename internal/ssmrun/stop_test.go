package ssmrun_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// devicesView is the store as the runner reads it: a task and the statuses of its devices.
type devicesView struct {
	mu       sync.Mutex
	t        *task.Task
	statuses map[string]task.DeviceStatus
	// onList runs before a listing is answered, once, as a cancel racing the dispatch would.
	onList func()
}

func (v *devicesView) cancel(ids ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range ids {
		v.statuses[id] = task.DeviceCancelled
		v.t.Counts.Cancelled++
		v.t.Counts.Pending--
	}
}

func (v *devicesView) GetTask(context.Context, string) (*task.Task, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := *v.t
	return &c, nil
}

func (v *devicesView) ListDevices(_ context.Context, _ string, q task.DeviceQuery) (*task.DevicePage, error) {
	v.mu.Lock()
	after := v.onList
	v.onList = nil
	page := &task.DevicePage{}
	defer func() {
		v.mu.Unlock()
		if after != nil {
			after()
		}
	}()
	for _, id := range v.t.Request.DeviceIDs {
		st, ok := v.statuses[id]
		if !ok {
			st = task.DevicePending
		}
		if len(q.Statuses) == 0 || slices.Contains(q.Statuses, st) {
			page.Devices = append(page.Devices, &task.Device{ID: id, Status: st})
		}
	}
	return page, nil
}

// TestStopDevicesCancelsExactlyThoseInstances cancels two devices of the first batch and one
// of the second: one CancelCommand per command, naming exactly its devices among them; a
// device of a batch never sent needs no call, and an unknown one is ignored.
func TestStopDevicesCancelsExactlyThoseInstances(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := devices(120)
	for _, id := range ids {
		b.srv.Script(id, ssmtest.Script{Outcome: ssmtest.Never})
	}
	tk := b.runningTask("T1", ids)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	if err := b.runner.StopDevices(t.Context(), tk, []string{ids[3], ids[70], ids[1], "i-0ffffffffffffffff"}); err != nil {
		t.Fatal(err)
	}
	cmds := b.srv.Commands()
	got := b.srv.Cancels()
	want := map[string][]string{cmds[0].CommandID: {ids[3], ids[1]}, cmds[1].CommandID: {ids[70]}}
	if len(got) != 2 {
		t.Fatalf("cancels = %+v, want one per command", got)
	}
	for _, c := range got {
		if !slices.Equal(c.InstanceIDs, want[c.CommandID]) {
			t.Errorf("CancelCommand of %s named %v, want %v", c.CommandID, c.InstanceIDs, want[c.CommandID])
		}
	}
	for _, id := range []string{ids[1], ids[3], ids[70]} {
		cmd := cmds[0].CommandID
		if id == ids[70] {
			cmd = cmds[1].CommandID
		}
		if st, _ := b.srv.Invocation(cmd, id); st.Status != ssmtest.StatusCancelling {
			t.Errorf("%s is %s after the cancel, want Cancelling", id, st.Status)
		}
	}
	if st, _ := b.srv.Invocation(cmds[0].CommandID, ids[0]); st.Status == ssmtest.StatusCancelling {
		t.Errorf("%s was cancelled with the others", ids[0])
	}
	// Polling reports them cancelled once SSM has stopped them.
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if cancelled := countStatus(updates, task.DeviceCancelled); cancelled != 3 {
		t.Errorf("Poll reported %d devices cancelled, want 3", cancelled)
	}
}

// TestStartLeavesCancelledDevicesOut checks that a dispatch sends no device that a caller
// cancelled before its batch went out, sends no batch at all when all of its devices were,
// and cancels a device cancelled while the dispatch was sending its batch.
func TestStartLeavesCancelledDevicesOut(t *testing.T) {
	t.Parallel()
	view := &devicesView{statuses: map[string]task.DeviceStatus{}}
	b := setup(t, func(c *ssmrun.Config) { c.Devices = view })
	ids := devices(110)
	view.t = b.runningTask("T1", ids)
	view.cancel(ids[2])
	view.cancel(ids[50:100]...) // the whole second batch
	tk := *view.t               // the task as the dispatch read it
	// racer is cancelled right after the dispatch read the cancelled devices: the batch goes
	// out with it, and the dispatch's second look cancels its invocation.
	racer := ids[105]
	view.onList = func() { view.cancel(racer) }
	b.srv.Script(racer, ssmtest.Script{Outcome: ssmtest.Never})
	if err := b.runner.Start(t.Context(), &tk); err != nil {
		t.Fatal(err)
	}
	cmds := b.srv.Commands()
	if len(cmds) != 2 {
		t.Fatalf("SSM got %d commands, want 2 (the second batch was all cancelled)", len(cmds))
	}
	if slices.Contains(cmds[0].InstanceIDs, ids[2]) || len(cmds[0].InstanceIDs) != 49 {
		t.Errorf("the first batch went to %d devices, with %s: want 49, without it", len(cmds[0].InstanceIDs), ids[2])
	}
	if !slices.Equal(cmds[1].InstanceIDs, ids[100:]) {
		t.Errorf("the third batch went to %v, want %v", cmds[1].InstanceIDs, ids[100:])
	}
	if !slices.Contains(cmds[1].InstanceIDs, racer) {
		t.Fatalf("the racing device was not in its batch")
	}
	got := b.srv.Cancels()
	if len(got) != 1 || got[0].CommandID != cmds[1].CommandID || !slices.Equal(got[0].InstanceIDs, []string{racer}) {
		t.Errorf("cancels = %+v, want one of %s naming %s", got, cmds[1].CommandID, racer)
	}
}

// countStatus counts the updates that report status.
func countStatus(updates []task.DeviceUpdate, status task.DeviceStatus) int {
	n := 0
	for _, u := range updates {
		if u.Status == status {
			n++
		}
	}
	return n
}
