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
