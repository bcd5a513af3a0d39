package localrun

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestRunSucceedsWithOutputEnvAndWorkingDir(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1", "d2"), nil)
	name := b.script(t, "hello.sh", `echo "task=$FLEETRUN_TASK_ID device=$FLEETRUN_DEVICE_ID"
echo "pwd=$(pwd)"
echo "path-set=${PATH:+yes}"
echo "to stderr" >&2`)
	tk := newTask("T1", name, time.Now(), "d1", "d2")
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d1", "d2"} {
		d := waitStatus(t, b.store, id, task.DeviceSucceeded)
		work := filepath.Join(b.data, "work", "T1", id)
		want := "task=T1 device=" + id + "\npwd=" + work + "\npath-set=yes\n"
		if d.Stdout != want {
			t.Errorf("%s stdout = %q, want %q", id, d.Stdout, want)
		}
		if d.Stderr != "to stderr\n" || d.StdoutTruncated || d.StderrTruncated {
			t.Errorf("%s stderr = %q (truncated %v/%v)", id, d.Stderr, d.StdoutTruncated, d.StderrTruncated)
		}
		if d.ExitCode == nil || *d.ExitCode != 0 {
			t.Errorf("%s exit code = %v, want 0", id, d.ExitCode)
		}
		ups := b.store.updatesFor(id)
		if len(ups) != 2 || ups[0].Status != task.DeviceRunning || ups[0].At.IsZero() || !strings.HasPrefix(ups[0].Ref, "pgid:") {
			t.Fatalf("%s updates = %+v, want running (with At and a pgid Ref) then succeeded", id, ups)
		}
		if _, ok := parseRef(ups[0].Ref); !ok || ups[1].Ref != ups[0].Ref {
			t.Errorf("%s refs %q, %q", id, ups[0].Ref, ups[1].Ref)
		}
		f, err := b.runner.OpenOutput("T1", id, StreamStderr)
		if err != nil {
			t.Fatal(err)
		}
		full, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(full) != "to stderr\n" {
			t.Errorf("%s full stderr = %q", id, full)
		}
	}
}

func TestRunFailureReportsExitCode(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	name := b.script(t, "fail.sh", `echo "about to fail" >&2; exit 3`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceFailed)
	if d.ExitCode == nil || *d.ExitCode != 3 {
		t.Errorf("exit code = %v, want 3", d.ExitCode)
	}
	if d.Stderr != "about to fail\n" {
		t.Errorf("stderr = %q", d.Stderr)
	}
}

func TestScriptKilledBySignalHasNoExitCode(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	name := b.script(t, "selfkill.sh", `kill -KILL $$`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceFailed)
	if d.ExitCode != nil || !strings.Contains(d.Reason, "SIGKILL") {
		t.Errorf("exit code %v, reason %q: want none and the signal named", d.ExitCode, d.Reason)
	}
}

func TestArgsArePassedLiterally(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	name := b.script(t, "args.sh", `for a in "$@"; do printf '[%s]\n' "$a"; done`)
	args := []string{"--dry-run", "two words", "semi;colon", "$(touch pwned)", "`touch pwned2`", "*", "", "a\nb", "'quoted'"}
	tk := newTask("T1", name, time.Now(), "d1")
	tk.Request.Args = args
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceSucceeded)
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]\n")
	}
	if d.Stdout != want.String() {
		t.Errorf("stdout = %q, want %q", d.Stdout, want.String())
	}
	for _, f := range []string{"pwned", "pwned2"} {
		if _, err := os.Stat(filepath.Join(b.data, "work", "T1", "d1", f)); err == nil {
			t.Errorf("an arg was interpreted: %s exists", f)
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	ids := []string{"d1", "d2", "d3", "d4", "d5", "d6"}
	b := setup(t, newFakeStore(ids...), nil)
	live := t.TempDir()
	counts := filepath.Join(t.TempDir(), "counts")
	// Each script marks itself live, records how many are live, holds its slot a little, and
	// unmarks itself before exiting.
	name := b.script(t, "conc.sh", `touch "$1/$FLEETRUN_DEVICE_ID"
ls "$1" | wc -l >> "$2"
sleep 0.2
rm "$1/$FLEETRUN_DEVICE_ID"`)
	tk := newTask("T1", name, time.Now(), ids...)
	tk.Request.Args = []string{live, counts}
	tk.Request.MaxConcurrency = "2"
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every device to finish", 20*time.Second, b.store.allTerminal)
	raw, err := os.ReadFile(counts)
	if err != nil {
		t.Fatal(err)
	}
	seen := strings.Fields(string(raw))
	if len(seen) != len(ids) {
		t.Fatalf("%d scripts ran, want %d", len(seen), len(ids))
	}
	for _, n := range seen {
		if n != "1" && n != "2" {
			t.Errorf("a script saw %s scripts live, want at most 2", n)
		}
	}
	for _, id := range ids {
		if d := b.store.device(id); d.Status != task.DeviceSucceeded {
			t.Errorf("%s is %s", id, d.Status)
		}
	}
	if n := b.store.peakRunning(); n != 2 {
		t.Errorf("at most %d devices reported running at once, want 2", n)
	}
}

func TestMaxErrorsStopsStartingDevices(t *testing.T) {
	t.Parallel()
	ids := []string{"d1", "d2", "d3", "d4", "d5"}
	b := setup(t, newFakeStore(ids...), nil)
	marker := filepath.Join(t.TempDir(), "ran")
	name := b.script(t, "failing.sh", `echo "$FLEETRUN_DEVICE_ID" >> "$1"; exit 1`)
	tk := newTask("T1", name, time.Now(), ids...)
	tk.Request.Args = []string{marker}
	tk.Request.MaxConcurrency = "1"
	tk.Request.MaxErrors = "1"
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every device to finish", 15*time.Second, b.store.allTerminal)
	for _, id := range ids[:2] {
		if d := b.store.device(id); d.Status != task.DeviceFailed {
			t.Errorf("%s is %s, want failed", id, d.Status)
		}
	}
	for _, id := range ids[2:] {
		d := b.store.device(id)
		if d.Status != task.DeviceCancelled || d.Reason != "not started: maxErrors exceeded" {
			t.Errorf("%s is %s (%q), want cancelled as not started", id, d.Status, d.Reason)
		}
	}
	raw, _ := os.ReadFile(marker)
	if got := strings.Fields(string(raw)); strings.Join(got, ",") != "d1,d2" {
		t.Errorf("scripts ran for %v, want d1,d2", got)
	}
}

func TestUnstartableScriptFailsTheDevice(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	writeExecutable(t, filepath.Join(b.root, "nointerpreter"), "#!/no/such/interpreter\necho hi\n")
	if err := b.runner.Start(context.Background(), newTask("T1", "nointerpreter", time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceFailed)
	if d.ExitCode != nil || !strings.Contains(d.Reason, "could not be started") {
		t.Errorf("exit code %v, reason %q", d.ExitCode, d.Reason)
	}
}

func TestScriptWithoutShebangIsInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	writeExecutable(t, filepath.Join(b.root, "noshebang"), "echo hi\n")
	err := b.runner.Start(context.Background(), newTask("T1", "noshebang", time.Now(), "d1"))
	if !task.IsCode(err, task.CodeInvalid) || !strings.Contains(err.Error(), "#!") {
		t.Fatalf("Start = %v, want an invalid error about the #! line", err)
	}
	if b.store.reportCalls() != 0 {
		t.Errorf("%d reports for a task that could not start", b.store.reportCalls())
	}
}

func TestStartWithBadScriptIsInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	err := b.runner.Start(context.Background(), newTask("T1", "gone.sh", time.Now(), "d1"))
	if !task.IsCode(err, task.CodeInvalid) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Start = %v, want an invalid error saying the script does not exist", err)
	}
	if b.store.reportCalls() != 0 {
		t.Errorf("%d reports for a task that could not start", b.store.reportCalls())
	}
}

func TestStartTwiceRunsEachDeviceOnce(t *testing.T) {
	t.Parallel()
	ids := []string{"d1", "d2", "d3"}
	b := setup(t, newFakeStore(ids...), nil)
	marker := filepath.Join(t.TempDir(), "ran")
	release := filepath.Join(t.TempDir(), "release")
	// The scripts wait for the test's go-ahead, so that the second and third Start happen
	// while the first run is still going.
	name := b.script(t, "once.sh", `echo "$FLEETRUN_DEVICE_ID" >> "$1"
while [ ! -e "$2" ]; do sleep 0.02; done`)
	tk := newTask("T1", name, time.Now(), ids...)
	tk.Request.Args = []string{marker, release}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := b.runner.Start(context.Background(), tk); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitFor(t, "every device to be running", 15*time.Second, func() bool {
		for _, id := range ids {
			if b.store.device(id).Status != task.DeviceRunning {
				return false
			}
		}
		return true
	})
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every device to finish", 15*time.Second, b.store.allTerminal)
	waitFor(t, "the run to be forgotten", 5*time.Second, func() bool { return !b.runner.running("T1") })
	// Once the run is over a redelivered Start reads the store and finds nothing to do.
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run to be forgotten", 5*time.Second, func() bool { return !b.runner.running("T1") })
	raw, _ := os.ReadFile(marker)
	if got := strings.Fields(string(raw)); len(got) != len(ids) {
		t.Errorf("scripts ran %d times (%v), want %d", len(got), got, len(ids))
	}
	for _, id := range ids {
		if ups := b.store.updatesFor(id); len(ups) != 2 {
			t.Errorf("%s got %d updates, want running and succeeded: %+v", id, len(ups), ups)
		}
	}
}

func TestReportIsRetried(t *testing.T) {
	t.Parallel()
	store := newFakeStore("d1")
	store.failFirst = 2
	b := setup(t, store, nil)
	name := b.script(t, "ok.sh", `echo ok`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceSucceeded)
	if d.Stdout != "ok\n" || b.store.reportCalls() != 4 {
		t.Errorf("stdout %q after %d report calls, want 4 (2 refused, running, succeeded)", d.Stdout, b.store.reportCalls())
	}
}

func TestShutdownStopsScriptsAndReportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	name := b.script(t, "long.sh", `sleep 30 & echo $! > child; echo $$ > self; wait`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(b.data, "work", "T1", "d1")
	self, child := readPid(t, filepath.Join(work, "self")), readPid(t, filepath.Join(work, "child"))
	waitStatus(t, b.store, "d1", task.DeviceRunning)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.runner.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitGone(t, self, child)
	if ups := b.store.updatesFor("d1"); len(ups) != 1 {
		t.Errorf("updates after shutdown: %+v, want only running", ups)
	}
	if err := b.runner.Start(context.Background(), newTask("T2", name, time.Now(), "d1")); !task.IsCode(err, task.CodeUnavailable) {
		t.Errorf("Start after Shutdown = %v, want unavailable", err)
	}
}
