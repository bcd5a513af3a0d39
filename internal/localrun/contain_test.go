package localrun

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fleetrun/fleetrun/internal/task"
)

// escaper leaves its process group and session for a grandchild that ignores SIGTERM, the way a
// daemonising script does, and waits.
const escaper = `setsid sh -c 'trap "" TERM; echo $$ > escaped; exec sleep 60' &
echo $$ > self
wait`

func TestCgroupStopsWhatLeftTheProcessGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	if b.runner.Contained() != "cgroup" {
		t.Skip("this process may not create cgroups here, so a script that calls setsid escapes its process group; " +
			"only `fleetrun serve` catches it then, as a child subreaper (see the end-to-end tests)")
	}
	name := b.script(t, "escaper.sh", escaper)
	tk := newTask("T1", name, time.Now(), "d1")
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(b.data, "work", "T1", "d1")
	self, escaped := readPid(t, filepath.Join(work, "self")), readPid(t, filepath.Join(work, "escaped"))
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })
	if pgid, _ := syscall.Getpgid(escaped); pgid == self {
		t.Fatalf("the grandchild %d is still in the script's group", escaped)
	}
	tk.Status = task.StatusCancelling
	if err := b.runner.Cancel(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.store, "d1", task.DeviceCancelled)
	waitGone(t, self, escaped)
}

func TestStopLeftoversKillsWhatDeadServersLeft(t *testing.T) {
	t.Parallel()
	self, err := processIdentity(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A pid above the kernel's maximum never exists, so this server is dead.
	dead := "4194305.12345"
	orphan := startMarked(t, dead)
	mine := startMarked(t, self)
	unmarked := startMarked(t, "")

	if _, err := StopLeftovers(nil); err != nil {
		t.Fatal(err)
	}
	waitGone(t, orphan)
	for _, pid := range []int{mine, unmarked} {
		if !alive(pid) {
			t.Errorf("process %d was killed, but its server is alive or it has no mark", pid)
		}
	}
}

func TestStopLeftoversKillsTheCgroupsOfDeadServers(t *testing.T) {
	t.Parallel()
	own, err := ownCgroup()
	if err != nil {
		t.Skip("no cgroup v2 here:", err)
	}
	// A pid above the kernel's maximum never exists; this test's own pid keeps the name unique.
	dir := filepath.Join(own, cgroupPrefix+"4194305."+strconv.Itoa(os.Getpid())+".1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skip("this process may not create cgroups here:", err)
	}
	t.Cleanup(func() { _ = killCgroup(dir); removeCgroupTree(dir, time.Second) })
	leaf := filepath.Join(dir, "d1")
	if err := os.Mkdir(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(leaf, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// No mark in its environment: only the cgroup gives it away.
	cmd := exec.Command("sleep", "60")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	if _, err := StopLeftovers(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the process in a dead server's cgroup was not killed")
	}
	waitFor(t, "the dead server's cgroup to be removed", 10*time.Second, func() bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
}

// startMarked starts `sleep 60` with envServerID set to server (none when empty) and returns its
// pid; the test's cleanup kills and reaps it.
func startMarked(t *testing.T, server string) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if server != "" {
		cmd.Env = append(os.Environ(), envServerID+"="+server)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	// alive counts a zombie as gone, so a killed child need not be reaped first.
	return cmd.Process.Pid
}

func TestProcessIdentity(t *testing.T) {
	t.Parallel()
	id, err := processIdentity(os.Getpid())
	if err != nil || !strings.HasPrefix(id, strconv.Itoa(os.Getpid())+".") || !identityAlive(id) {
		t.Fatalf("identity %q, %v: want pid.start, alive", id, err)
	}
	if identityAlive("1.0") || identityAlive("4194305.1") || identityAlive("garbage") {
		t.Error("an identity of no live process counted as alive")
	}
}

// A script's cgroup is used again by the next script when nothing was left running in it; what
// a script leaves behind is killed, and no script ever runs beside another's leftovers.
func TestCgroupsAreUsedAgainOnlyWhenEmpty(t *testing.T) {
	t.Parallel()
	ids := []string{"d1", "d2", "d3", "d4"}
	b := setup(t, newFakeStore(ids...), nil)
	if b.runner.Contained() != "cgroup" {
		t.Skip("this process may not create cgroups here")
	}
	// Each script notes its leaf and the processes in it while it runs; d2 leaves a process
	// of its own session behind.
	name := b.script(t, "where.sh", `leaf=$(basename "$(cut -d: -f3 /proc/self/cgroup)")
echo "$leaf" > leaf
cat "`+b.runner.cg.dir+`/$leaf/cgroup.procs" > procs
if [ "$FLEETRUN_DEVICE_ID" = d2 ]; then
  setsid sh -c 'exec sleep 60' </dev/null >/dev/null 2>&1 &
  echo $! > left
fi`)
	tk := newTask("T1", name, time.Now(), ids...)
	tk.Request.MaxConcurrency = "1"
	if err := b.runner.Start(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every device to finish", 20*time.Second, b.store.allTerminal)

	read := func(id, file string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(b.data, "work", "T1", id, file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	left := read("d2", "left")
	t.Cleanup(func() {
		if pid, err := strconv.Atoi(left); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if read("d1", "leaf") != read("d2", "leaf") {
		t.Errorf("d2 ran in cgroup %s, not in d1's %s, which d1 left empty", read("d2", "leaf"), read("d1", "leaf"))
	}
	pid, err := strconv.Atoi(left)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	for _, id := range []string{"d3", "d4"} {
		for _, p := range strings.Fields(read(id, "procs")) {
			if p == left {
				t.Errorf("%s ran beside process %s, which d2 left behind", id, left)
			}
		}
	}
	for _, id := range ids {
		if d := b.store.device(id); d.Status != task.DeviceSucceeded {
			t.Errorf("%s is %s, want succeeded", id, d.Status)
		}
	}
}

// A cgroup that was killed is never handed out again, even once empty (some kernels kill what
// is later cloned into it); an empty one that was not is.
func TestAKilledCgroupIsNeverUsedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore(), nil)
	if b.runner.Contained() != "cgroup" {
		t.Skip("this process may not create cgroups here")
	}
	c := b.runner.cg
	runIn := func(l *leaf, name string, args ...string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: l.fd}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	clean, err := c.take()
	if err != nil {
		t.Fatal(err)
	}
	if err := runIn(clean, "true").Wait(); err != nil {
		t.Fatal(err)
	}
	c.put(clean)
	again, err := c.take()
	if err != nil {
		t.Fatal(err)
	}
	if again != clean {
		t.Errorf("an empty cgroup that was never killed was not used again: got %s, want %s", again.dir, clean.dir)
	}

	sleeper := runIn(again, "sleep", "60")
	again.kill()
	_ = sleeper.Wait()
	waitFor(t, "the killed cgroup to be empty", 10*time.Second, func() bool { return !again.populated() })
	c.put(again)
	next, err := c.take()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.put(next) })
	if next == again || next.dir == again.dir {
		t.Errorf("the killed cgroup %s was handed out again", again.dir)
	}
	waitFor(t, "the killed cgroup to be removed", 10*time.Second, func() bool {
		_, err := os.Stat(again.dir)
		return os.IsNotExist(err)
	})
	if err := runIn(next, "true").Wait(); err != nil {
		t.Errorf("a process in a fresh cgroup: %v", err)
	}
}
