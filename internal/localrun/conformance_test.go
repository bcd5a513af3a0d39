package localrun_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/engine/runnertest"
	"github.com/fleetrun/fleetrun/internal/localrun"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestRunnerConformance runs the runner conformance suite against the local runner: real child
// processes, whose scripts record each start in a file.
func TestRunnerConformance(t *testing.T) {
	t.Parallel()
	runnertest.Run(t, func(t *testing.T) runnertest.Target {
		return &localTarget{root: t.TempDir(), data: t.TempDir(), state: t.TempDir()}
	})
}

// localTarget is the local runner with a script root, a data directory that outlives a
// restart, and a directory where the scripts record their starts.
type localTarget struct {
	root, data, state string
	scripts           atomic.Int32
}

func (l *localTarget) DeviceIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%d", i+1)
	}
	return ids
}

func (l *localTarget) Rules() task.Rules {
	return task.Rules{DeviceID: task.LocalDeviceID, CheckScript: localrun.CheckScript(l.root)}
}

// Script writes one script in which each device does what behave says, by its
// FLEETRUN_DEVICE_ID. Outputs are written to files beside it and copied out with cat, so they
// reach the runner byte for byte.
func (l *localTarget) Script(t *testing.T, behave map[string]runnertest.Behaviour) string {
	t.Helper()
	name := fmt.Sprintf("script-%d.sh", l.scripts.Add(1))
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\necho started >> %q/\"$FLEETRUN_DEVICE_ID\".starts\ncase \"$FLEETRUN_DEVICE_ID\" in\n", l.state)
	for _, id := range slices.Sorted(maps.Keys(behave)) {
		bh := behave[id]
		out := filepath.Join(l.state, name+"."+id)
		if err := os.WriteFile(out+".stdout", []byte(bh.Stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out+".stderr", []byte(bh.Stderr), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s)\n\tcat %q\n\tcat %q >&2\n", id, out+".stdout", out+".stderr")
		switch bh.Outcome {
		case runnertest.Succeed:
			b.WriteString("\texit 0;;\n")
		case runnertest.Fail:
			fmt.Fprintf(&b, "\texit %d;;\n", bh.ExitCode)
		case runnertest.Hang, runnertest.Slow:
			// Slow outlives any test that waits for it: a restart ends it first.
			b.WriteString("\texec sleep 600;;\n")
		}
	}
	b.WriteString("esac\n")
	writeScript(t, filepath.Join(l.root, name), b.String())
	return name
}

func (l *localTarget) Start(t *testing.T, env runnertest.Env) engine.Runner {
	t.Helper()
	r, err := localrun.New(localrun.Config{ScriptRoot: l.root, DataDir: l.data, Devices: env.Store,
		Reporter: env.Reporter, Grace: 200 * time.Millisecond, Now: env.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (l *localTarget) Stop(t *testing.T, r engine.Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.(*localrun.Runner).Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func (l *localTarget) Starts(t *testing.T, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.state, id+".starts"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "started\n")
}

// StoppedAlone checks that the device's process group is gone; the suite checks that the
// other devices still run.
func (l *localTarget) StoppedAlone(t *testing.T, d *task.Device) error {
	pgid, ok := strings.CutPrefix(d.Ref, "pgid:")
	n, err := strconv.Atoi(pgid)
	if !ok || err != nil {
		return fmt.Errorf("device %s has no process group in its ref %q", d.ID, d.Ref)
	}
	if err := syscall.Kill(-n, 0); err != syscall.ESRCH {
		return fmt.Errorf("process group %d of device %s is still there (%v)", n, d.ID, err)
	}
	return nil
}

func (l *localTarget) Expect() runnertest.Expect {
	// The process of a running script ends with the runner's, so a restarted runner reports
	// the device failed rather than run the script on it a second time.
	return runnertest.Expect{StdoutLimit: task.StdoutInlineLimit, AfterRestart: task.DeviceFailed}
}

// writeScript writes an executable file through a child process, so that no descriptor of it
// can leak into a child that a parallel test forks meanwhile ("text file busy").
func writeScript(t *testing.T, path, content string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `cat > "$1" && chmod 755 "$1"`, "sh", path)
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write %s: %v: %s", path, err, out)
	}
}
