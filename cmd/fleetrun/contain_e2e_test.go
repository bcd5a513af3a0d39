package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

// escaper starts a grandchild in a session of its own (setsid) that ignores SIGTERM and
// outlives its parent, the way a daemonising script does, records its pid and waits.
const escaper = `#!/bin/sh
setsid sh -c 'trap "" TERM; exec sleep 300' &
echo $! > "$PIDS/$FLEETRUN_DEVICE_ID.escaped"
wait
`

// TestEscapedGrandchildrenAreStopped checks that a process that left its script's process group
// and session is stopped with its task: on cancel, at the task's deadline, and after the server
// is killed, by the next server. With cgroups, the device's cgroup holds it; without them
// (--cgroups off, or a system where the server may not create cgroups), the server is its
// subreaper once its parent exits, and finds it by the marks in its environment. A process that
// also clears its environment escapes the second way; that is why cgroups are used where they
// can be, and the test does not try it without them.
func TestEscapedGrandchildrenAreStopped(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"auto", "off"} {
		t.Run("cgroups "+mode, func(t *testing.T) {
			t.Parallel()
			scripts := scriptRoot(t)
			writeScript(t, scripts, "escaper.sh", escaper)
			writeScript(t, scripts, "unmarked.sh", strings.Replace(escaper, "setsid sh", "env -i setsid sh", 1))
			data := t.TempDir()
			s := startServer(t, data, scripts, "--cgroups", mode)
			cgroups := serverCgroups(t, s.cmd.Process.Pid)
			switch {
			case mode == "off" && len(cgroups) > 0:
				t.Fatalf("--cgroups off, yet the server made %v", cgroups)
			case mode == "auto" && len(cgroups) == 0:
				t.Log("this system gives the server no cgroups: auto runs as off does, with the subreaper only")
			}

			// cancel runs script on device and cancels it once the grandchild has escaped.
			cancel := func(t *testing.T, device, script string) (api.Task, int) {
				task := s.submit(api.SubmitRequest{DeviceIDs: []string{device}, ScriptURL: script})
				escaped := readPids(t, s.pids, device+".escaped")[0]
				s.waitFor(task.ID, "running", func(t api.Task) bool { return t.Progress.Devices.Running == 1 })
				if r := s.do(http.MethodDelete, "/tasks/"+task.ID, nil); r.status >= 300 {
					t.Fatalf("cancel: %d %s", r.status, r.body)
				}
				s.waitStatus(task.ID, api.StatusCancelled)
				return task, escaped
			}

			t.Run("cancel, the environment cleared", func(t *testing.T) {
				if len(cgroups) == 0 {
					t.Skip("without cgroups, a process that clears its environment and leaves its session cannot be told from any other")
				}
				_, escaped := cancel(t, "e1", "unmarked.sh")
				waitGone(t, escaped)
			})

			t.Run("cancel", func(t *testing.T) {
				task, escaped := cancel(t, "c1", "escaper.sh")
				waitGone(t, escaped)
				waitNoMarked(t, task.ID)
			})

			t.Run("deadline", func(t *testing.T) {
				task := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "escaper.sh", TimeoutSeconds: 2})
				escaped := readPids(t, s.pids, "d1.escaped")[0]
				s.waitStatus(task.ID, api.StatusTimedOut)
				waitGone(t, escaped)
				waitNoMarked(t, task.ID)
			})

			t.Run("server killed", func(t *testing.T) {
				task := s.submit(api.SubmitRequest{DeviceIDs: []string{"k1"}, ScriptURL: "escaper.sh"})
				escaped := readPids(t, s.pids, "k1.escaped")[0]
				s.waitFor(task.ID, "running", func(t api.Task) bool { return t.Progress.Devices.Running == 1 })
				// It leads a session of its own, so no signal to the script's group reaches it,
				// and the parent-death signal reaches only the script. (Its pid is written as it
				// forks, a moment before setsid runs in it.)
				clocktest.Eventually(t, 10*time.Second, func() error {
					if sid, err := unix.Getsid(escaped); err != nil || sid != escaped {
						return fmt.Errorf("the grandchild %d is in session %d (%v), not one of its own", escaped, sid, err)
					}
					return nil
				})
				s.kill()
				// The next server, on another data directory, stops it. (Any server that starts
				// on this machine meanwhile, another test's, may stop it first.)
				startServer(t, t.TempDir(), scripts, "--cgroups", mode)
				waitGone(t, escaped)
				waitNoMarked(t, task.ID)
			})
		})
	}
}

// TestLeftoversOfAKilledServerLeaveNoCgroups checks that a restart removes the cgroups of the
// server it replaces.
func TestLeftoversOfAKilledServerLeaveNoCgroups(t *testing.T) {
	t.Parallel()
	scripts := scriptRoot(t)
	writeScript(t, scripts, "escaper.sh", escaper)
	s := startServer(t, t.TempDir(), scripts)
	cgroups := serverCgroups(t, s.cmd.Process.Pid)
	if len(cgroups) == 0 {
		t.Skip("this system gives the server no cgroups")
	}
	s.submit(api.SubmitRequest{DeviceIDs: []string{"x1"}, ScriptURL: "escaper.sh"})
	readPids(t, s.pids, "x1.escaped")
	s.kill()
	startServer(t, t.TempDir(), scripts)
	for _, dir := range cgroups {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the cgroup %s of the killed server is still there (%v)", dir, err)
		}
	}
}

// serverCgroups finds the runner cgroups of server pid, by their name (see localrun).
func serverCgroups(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for line := range strings.SplitSeq(string(b), "\n") {
		before, after, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(after, "cgroup2 ") {
			continue
		}
		mount := strings.Fields(before)[4]
		matches, _ := filepath.Glob(filepath.Join(mount, "*", "fleetrun."+strconv.Itoa(pid)+".*"))
		top, _ := filepath.Glob(filepath.Join(mount, "fleetrun."+strconv.Itoa(pid)+".*"))
		found = append(found, append(matches, top...)...)
	}
	return found
}
