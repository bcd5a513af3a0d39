package localrun

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// TestStopDevicesStopsOnlyThoseDevices stops one running device and one not started yet of a
// task whose other devices run on: the running one's whole group is gone and it is cancelled
// with the output it wrote, the other never starts, and the rest succeed.
func TestStopDevicesStopsOnlyThoseDevices(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1", "d2", "d3", "d4"), nil)
	// Each script waits for a file named after its device, so the test decides when it ends.
	name := b.script(t, "wait.sh", stubbornUntil)
	tk := newTask("T1", name, time.Now(), "d1", "d2", "d3", "d4")
	tk.Request.MaxConcurrency = "3"
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	work := func(id string) string { return filepath.Join(b.data, "work", "T1", id) }
	self, child := readPid(t, filepath.Join(work("d2"), "self")), readPid(t, filepath.Join(work("d2"), "child"))
	waitStatus(t, b.store, "d2", task.DeviceRunning)

	if err := b.runner.StopDevices(context.Background(), tk, []string{"d2", "d4"}); err != nil {
		t.Fatal(err)
	}
	d2 := waitStatus(t, b.store, "d2", task.DeviceCancelled)
	waitGone(t, self, child)
	if d2.Reason != stoppedReason || d2.Stdout != "started\n" {
		t.Errorf("d2 reason %q, stdout %q", d2.Reason, d2.Stdout)
	}
	// d2's slot went to d4, which was asked to stop before its turn: it is skipped.
	d4 := waitStatus(t, b.store, "d4", task.DeviceCancelled)
	if _, err := os.Stat(work("d4")); err == nil || !strings.Contains(d4.Reason, "before it started") {
		t.Errorf("d4 was started, or has reason %q", d4.Reason)
	}
	for _, id := range []string{"d1", "d3"} {
		if d := b.store.device(id); d.Status != task.DeviceRunning {
			t.Fatalf("%s is %s after the others were stopped, want running", id, d.Status)
		}
		release(t, work(id))
		waitStatus(t, b.store, id, task.DeviceSucceeded)
	}
	// Asking again, once the run is over, changes nothing.
	waitFor(t, "the run to be forgotten", 5*time.Second, func() bool { return !b.runner.running("T1") })
	calls := b.store.reportCalls()
	if err := b.runner.StopDevices(context.Background(), tk, []string{"d2", "d4"}); err != nil {
		t.Fatal(err)
	}
	if b.store.reportCalls() != calls {
		t.Errorf("a stop after the run reported again")
	}
}

// TestStopDevicesOfATaskUnknownToThisProcess stops a device that a previous life of the server
// was running: its group is killed and it is reported cancelled.
func TestStopDevicesOfATaskUnknownToThisProcess(t *testing.T) {
	t.Parallel()
	store := newFakeStore("d1", "d2")
	b := setup(t, store, nil)
	pid, gone := lostDevice(t, store, "T1", "d1")
	tk := newTask("T1", "none.sh", time.Now(), "d1", "d2")
	if err := b.runner.StopDevices(context.Background(), tk, []string{"d1", "d2", "ghost"}); err != nil {
		t.Fatal(err)
	}
	<-gone
	if alive(pid) {
		t.Error("the lost group is still running")
	}
	if d := store.device("d1"); d.Status != task.DeviceCancelled || d.Reason != stoppedReason {
		t.Errorf("d1 = %s %q, want cancelled", d.Status, d.Reason)
	}
	if d := store.device("d2"); d.Status != task.DevicePending {
		t.Errorf("d2 = %s, want it left pending for the engine", d.Status)
	}
}

// TestRunningOutputIsRefreshed checks that a running device's inline output follows what its
// script writes, before the script ends.
func TestRunningOutputIsRefreshed(t *testing.T) {
	t.Parallel()
	b := setupWith(t, newFakeStore("d1"), Config{OutputInterval: 50 * time.Millisecond})
	name := b.script(t, "talk.sh", `echo line 1
until [ -e release ]; do sleep 0.05; done
echo line 2`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the running device's output", 10*time.Second, func() bool {
		d := b.store.device("d1")
		return d.Status == task.DeviceRunning && d.Stdout == "line 1\n"
	})
	release(t, filepath.Join(b.data, "work", "T1", "d1"))
	if d := waitStatus(t, b.store, "d1", task.DeviceSucceeded); d.Stdout != "line 1\nline 2\n" {
		t.Errorf("the finished device's stdout = %q", d.Stdout)
	}
}

// stubbornUntil is stubborn (it ignores SIGTERM, as does its child) until a file named release
// appears in its working directory, when it exits 0.
const stubbornUntil = `trap '' TERM
sleep 30 & echo $! > child
echo $$ > self
echo started
until [ -e release ]; do sleep 0.05; done
kill $! 2>/dev/null
exit 0`

// release lets a script waiting in work end.
func release(t *testing.T, work string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(work, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}
