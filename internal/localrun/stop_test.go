package localrun

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// stubborn ignores SIGTERM, as its background child does (an ignored signal is inherited), so
// only the SIGKILL that follows the grace period stops them.
const stubborn = `trap '' TERM
sleep 30 & echo $! > child
echo $$ > self
echo started
wait`

func TestDeadlineKillsTheGroupAndTimesOut(t *testing.T) {
	t.Parallel()
	started := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	// The clock says the task started 1.5 s before a 2 s deadline: half a second is left.
	b := setup(t, newFakeStore("d1", "d2"), func() time.Time { return started.Add(1500 * time.Millisecond) })
	name := b.script(t, "stubborn.sh", stubborn)
	tk := newTask("T1", name, started, "d1", "d2")
	tk.Request.TimeoutSeconds = 2
	tk.Request.MaxConcurrency = "1"
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(b.data, "work", "T1", "d1")
	self, child := readPid(t, filepath.Join(work, "self")), readPid(t, filepath.Join(work, "child"))
	d1 := waitStatus(t, b.store, "d1", task.DeviceTimedOut)
	waitGone(t, self, child)
	if d1.ExitCode != nil || d1.Reason != "stopped at the task's deadline of 2s" || d1.Stdout != "started\n" {
		t.Errorf("d1 = exit %v, reason %q, stdout %q", d1.ExitCode, d1.Reason, d1.Stdout)
	}
	d2 := waitStatus(t, b.store, "d2", task.DeviceTimedOut)
	if d2.Reason != "not started before the task's deadline of 2s" {
		t.Errorf("d2 reason = %q", d2.Reason)
	}
	if _, err := os.Stat(filepath.Join(b.data, "work", "T1", "d2")); err == nil {
		t.Error("d2 was started after the deadline")
	}
}

func TestDeadlineAlreadyPassedStartsNothing(t *testing.T) {
	t.Parallel()
	started := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := setup(t, newFakeStore("d1"), func() time.Time { return started.Add(time.Hour) })
	name := b.script(t, "ok.sh", `echo ok`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, started, "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceTimedOut)
	if !strings.HasPrefix(d.Reason, "not started before") {
		t.Errorf("reason = %q", d.Reason)
	}
}

func TestCancelKillsTheWholeGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1", "d2"), nil)
	name := b.script(t, "stubborn.sh", stubborn)
	tk := newTask("T1", name, time.Now(), "d1", "d2")
	tk.Request.MaxConcurrency = "1"
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(b.data, "work", "T1", "d1")
	self, child := readPid(t, filepath.Join(work, "self")), readPid(t, filepath.Join(work, "child"))
	waitStatus(t, b.store, "d1", task.DeviceRunning)

	tk.Status = task.StatusCancelling
	if err := b.runner.Cancel(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	d1 := waitStatus(t, b.store, "d1", task.DeviceCancelled)
	waitGone(t, self, child)
	if d1.Reason != "stopped because the task was cancelled" || d1.Stdout != "started\n" {
		t.Errorf("d1 reason %q, stdout %q", d1.Reason, d1.Stdout)
	}
	d2 := waitStatus(t, b.store, "d2", task.DeviceCancelled)
	if d2.Reason != "not started: the task was cancelled" {
		t.Errorf("d2 reason = %q", d2.Reason)
	}

	// A repeated cancel, during the run or after it, changes nothing.
	if err := b.runner.Cancel(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run to be forgotten", 5*time.Second, func() bool { return !b.runner.running("T1") })
	calls := b.store.reportCalls()
	if err := b.runner.Cancel(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	if b.store.reportCalls() != calls {
		t.Errorf("a cancel after the run reported again")
	}
	if ups := b.store.updatesFor("d1"); len(ups) != 2 {
		t.Errorf("d1 updates = %+v, want running then cancelled", ups)
	}
}

func TestCancelRightAfterStartCancelsEveryDevice(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1", "d2", "d3"), nil)
	name := b.script(t, "long.sh", `sleep 30`)
	tk := newTask("T1", name, time.Now(), "d1", "d2", "d3")
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	if err := b.runner.Cancel(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every device to finish", 15*time.Second, b.store.allTerminal)
	for _, id := range tk.Request.DeviceIDs {
		if d := b.store.device(id); d.Status != task.DeviceCancelled {
			t.Errorf("%s is %s", id, d.Status)
		}
	}
}

// lostDevice records device id of task taskID as running in a group that an earlier life of
// the server started, and returns that group's leader and a channel closed when it is gone.
func lostDevice(t *testing.T, store *fakeStore, taskID, id string) (int, <-chan struct{}) {
	cmd, done := startGroup(t, envTaskID+"="+taskID, envDeviceID+"="+id)
	store.set(task.Device{ID: id, Status: task.DeviceRunning, Ref: groupRef(cmd.Process.Pid)})
	return cmd.Process.Pid, done
}

func TestStartResumesAfterRestart(t *testing.T) {
	t.Parallel()
	store := newFakeStore("fresh")
	b := setup(t, store, nil)
	_, lostDone := lostDevice(t, store, "T1", "lost")
	// A group whose id a device recorded but whose processes are not that device's, as when
	// the id was reused: it must be left alone.
	foreign, foreignDone := startGroup(t)
	store.set(task.Device{ID: "reused", Status: task.DeviceRunning, Ref: groupRef(foreign.Process.Pid)})
	store.set(task.Device{ID: "done", Status: task.DeviceSucceeded})
	// Output the lost script wrote before the restart is reported with it.
	out := filepath.Join(b.data, "output", "T1", "lost")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "stdout"), []byte("half done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := b.script(t, "ok.sh", `echo ran`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "fresh", "lost", "reused", "done")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lostDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the lost device's process group was not killed")
	}
	for _, id := range []string{"lost", "reused"} {
		d := waitStatus(t, store, id, task.DeviceFailed)
		if d.Reason != lostReason {
			t.Errorf("%s reason = %q", id, d.Reason)
		}
	}
	if d := store.device("lost"); d.Stdout != "half done\n" {
		t.Errorf("lost stdout = %q", d.Stdout)
	}
	if d := waitStatus(t, store, "fresh", task.DeviceSucceeded); d.Stdout != "ran\n" {
		t.Errorf("fresh stdout = %q", d.Stdout)
	}
	if ups := store.updatesFor("done"); len(ups) != 0 {
		t.Errorf("a finished device was reported again: %+v", ups)
	}
	// The foreign group was looked at in the same pass that killed the lost one, long before
	// the fresh device finished: had it been signalled, it would be gone by now.
	select {
	case <-foreignDone:
		t.Error("a group not started for the device was killed")
	default:
		if !alive(foreign.Process.Pid) {
			t.Error("a group not started for the device was killed")
		}
	}
}

func TestCancelTaskUnknownToThisProcess(t *testing.T) {
	t.Parallel()
	store := newFakeStore("waiting")
	b := setup(t, store, nil)
	_, lostDone := lostDevice(t, store, "T1", "lost")
	store.set(task.Device{ID: "done", Status: task.DeviceFailed, ExitCode: new(2)})
	tk := newTask("T1", "never-read.sh", time.Now(), "waiting", "lost", "done")
	tk.Status = task.StatusCancelling
	if err := b.runner.Cancel(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	// Cancel reports before it returns when it has no run of the task.
	if d := store.device("lost"); d.Status != task.DeviceCancelled || d.Reason != "stopped because the task was cancelled" {
		t.Errorf("lost = %s (%q)", d.Status, d.Reason)
	}
	if d := store.device("waiting"); d.Status != task.DeviceCancelled || d.Reason != "not started: the task was cancelled" {
		t.Errorf("waiting = %s (%q)", d.Status, d.Reason)
	}
	if d := store.device("done"); d.Status != task.DeviceFailed || len(store.updatesFor("done")) != 0 {
		t.Errorf("a finished device was touched: %+v", d)
	}
	select {
	case <-lostDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the lost device's process group was not killed")
	}
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]int{"pgid:1234": 1234, "pgid:1": 0, "pgid:0": 0, "pgid:-5": 0,
		"pgid:": 0, "pgid:12x": 0, "cmd-123": 0, "": 0, strings.Repeat("9", 30): 0, groupRef(77): 77} {
		got, ok := parseRef(ref)
		if ok != (want != 0) || got != want {
			t.Errorf("parseRef(%q) = %d, %v; want %d", ref, got, ok, want)
		}
	}
	if groupRef(42) != "pgid:"+strconv.Itoa(42) {
		t.Errorf("groupRef(42) = %q", groupRef(42))
	}
}
