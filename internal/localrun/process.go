package localrun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Environment variables every script gets, on top of the server's own environment.
const (
	envTaskID   = "FLEETRUN_TASK_ID"
	envDeviceID = "FLEETRUN_DEVICE_ID"
)

// runDevice runs the script for one device and reports it running, then finished.
func (r *Runner) runDevice(ru *run, path, deviceID string) {
	cmd, out, cg, pidfd, err := r.start(ru.id, deviceID, path, ru.req.Args)
	if err != nil {
		r.log.Warn("script could not be started", "task_id", ru.id, "device_id", deviceID, "err", err)
		ru.countError()
		if _, _, quiet := ru.state(); !quiet {
			ru.updates.add(task.DeviceUpdate{DeviceID: deviceID, Status: task.DeviceFailed, At: r.cfg.Now().UTC(),
				Reason: "the script could not be started: " + startError(err)})
		}
		return
	}
	pgid := cmd.Process.Pid
	p := &proc{pgid: pgid, cgroup: cg, started: r.cfg.Now().UTC()}
	ru.register(deviceID, p)
	if _, _, quiet := ru.state(); !quiet {
		ru.updates.add(task.DeviceUpdate{DeviceID: deviceID, Status: task.DeviceRunning, At: p.started, Ref: groupRef(pgid)})
	}

	if err := waitExit(pgid, pidfd); err != nil {
		// Waiting on the pidfd failed, which should not happen: wait with a thread instead.
		r.log.Error("waiting for a script to exit failed", "task_id", ru.id, "device_id", deviceID, "err", err)
		_ = waitExitBlocking(pgid)
	}
	signalled, quiet := ru.exited(deviceID, p)
	// The leader has exited but is not reaped yet, so its group id cannot have been reused:
	// whatever the script left running in its group, or anywhere in its cgroup, is killed
	// before the id is freed.
	p.kill()
	if err := r.reap(cmd); err != nil && cmd.ProcessState == nil {
		r.log.Error("reaping a script failed", "task_id", ru.id, "device_id", deviceID, "err", err)
	}
	r.cleanUp(cg)
	u := outcome(cmd.ProcessState, signalled, ru.req.TimeoutSeconds)
	u.Stdout, u.StdoutTruncated = out.stdout.finish(task.StdoutInlineLimit)
	u.Stderr, u.StderrTruncated = out.stderr.finish(task.StderrInlineLimit)
	if quiet {
		return
	}
	u.DeviceID, u.At, u.Ref = deviceID, r.cfg.Now().UTC(), groupRef(pgid)
	if u.Status.CountsAsError() {
		ru.countError()
	}
	ru.updates.addAndWait(u)
}

// start starts a device's script: in its own cgroup where the runner has cgroups, with a pidfd
// to wait on, and recorded as a child this runner reaps itself (see reaper). It returns the
// command, the capture of its output, the script's cgroup (nil without) and the pidfd (-1
// where the kernel has none).
func (r *Runner) start(taskID, deviceID, path string, args []string) (*exec.Cmd, *outputs, *leaf, int, error) {
	r.starting <- struct{}{}
	defer func() { <-r.starting }()
	cmd, out, err := r.command(taskID, deviceID, path, args)
	if err != nil {
		return nil, nil, nil, -1, err
	}
	defer closeFiles(cmd)
	var cg *leaf
	if r.cg != nil {
		if cg, err = r.cg.take(); err != nil {
			r.log.Warn("a script runs without a cgroup of its own", "task_id", taskID, "device_id", deviceID, "err", err)
		} else {
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg.fd
		}
	}
	pidfd := -1
	cmd.SysProcAttr.PidFD = &pidfd
	// The reaper must not take this child for an orphan it adopted, however soon it exits.
	r.children.Lock()
	err = cmd.Start()
	if err == nil {
		r.leaders[cmd.Process.Pid] = true
	}
	r.children.Unlock()
	if err != nil {
		if cg != nil {
			r.cg.put(cg)
		}
		out.abandon()
		return nil, nil, nil, -1, err
	}
	out.stdout.start()
	out.stderr.start()
	return cmd, out, cg, pidfd, nil
}

// reap reaps a script's leader, which has exited, and forgets it as one. Both happen under the
// lock that start holds while it forks, so that no new child can take the freed pid before
// it is forgotten.
func (r *Runner) reap(cmd *exec.Cmd) error {
	r.children.Lock()
	defer r.children.Unlock()
	err := cmd.Wait() // the leader has exited: this does not block
	delete(r.leaders, cmd.Process.Pid)
	return err
}

// cleanUp gives back a finished script's cgroup (see cgroups.put), and has the reaper look
// for what the script left behind.
func (r *Runner) cleanUp(cg *leaf) {
	if cg != nil {
		r.cg.put(cg)
	}
	r.kickReaper()
}

// outputs are the captures of a script's stdout and stderr.
type outputs struct{ stdout, stderr *capture }

// abandon closes the pipes of a script that did not start.
func (o *outputs) abandon() {
	o.stdout.abandon()
	o.stderr.abandon()
}

// command prepares a device's script: its working directory, the pipes that capture its
// output, its environment, and a process group of its own that dies with the server.
func (r *Runner) command(taskID, deviceID, path string, args []string) (*exec.Cmd, *outputs, error) {
	if !safeElement(deviceID) {
		return nil, nil, fmt.Errorf("device id %q cannot be used as a directory name", deviceID)
	}
	work := r.workDir(taskID, deviceID)
	if err := mkdir(work); err != nil {
		return nil, nil, fmt.Errorf("localrun: create a directory for device %s: %w", deviceID, err)
	}
	dir := r.outputDir(taskID, deviceID)
	stdout, err := newCapture(filepath.Join(dir, StreamStdout), task.StdoutInlineLimit, r.log)
	if err != nil {
		return nil, nil, fmt.Errorf("localrun: capture the stdout of device %s: %w", deviceID, err)
	}
	stderr, err := newCapture(filepath.Join(dir, StreamStderr), task.StderrInlineLimit, r.log)
	if err != nil {
		stdout.abandon()
		return nil, nil, fmt.Errorf("localrun: capture the stderr of device %s: %w", deviceID, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), envTaskID+"="+taskID, envDeviceID+"="+deviceID, envServerID+"="+r.identity)
	// Pdeathsig is sent when the OS thread that forked the child ends, not only when the
	// server does; the Go runtime ends a thread only when a goroutine leaves it locked, which
	// nothing in the server does, so in practice the child dies with the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// The script writes into pipes, which the server reads as it writes (see capture); a
	// grandchild that keeps them open delays nothing, since the script is waited for through
	// its pidfd and the capture stops reading captureGrace after the script's group is killed.
	cmd.Stdout, cmd.Stderr = stdout.write, stderr.write
	return cmd, &outputs{stdout: stdout, stderr: stderr}, nil
}

// prepareDirs creates the directory that holds a task's devices' working directories, once
// per run, so that each device's costs one mkdir. The output directories are made at a
// device's first byte of output (see capture).
func (r *Runner) prepareDirs(taskID string) {
	dir := filepath.Dir(r.workDir(taskID, "d"))
	if err := mkdir(dir); err != nil {
		r.log.Warn("creating a task's working directories failed", "task_id", taskID, "dir", dir, "err", err)
	}
}

// mkdir creates dir, whose parent usually exists (prepareDirs): one system call where
// os.MkdirAll takes three. A directory left by an earlier run is taken as it is.
func mkdir(dir string) error {
	err := os.Mkdir(dir, 0o750)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			return nil
		}
		return err
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o750)
	}
	return err
}

// closeFiles closes the server's copies of the output files once the child has its own.
func closeFiles(cmd *exec.Cmd) {
	for _, w := range []any{cmd.Stdout, cmd.Stderr} {
		if f, ok := w.(*os.File); ok {
			f.Close()
		}
	}
}

// waitExit waits until process pid has exited, without reaping it, and closes pidfd.
//
// The wait parks the calling goroutine in the runtime's network poller, not an OS thread: a
// pidfd becomes readable when its process exits. A blocking waitid would hold a thread per
// running script, and Go ends the whole server at 10,000 threads. Only a kernel without pidfds
// (before Linux 5.4; pidfd is then -1) gets the blocking wait.
func waitExit(pid, pidfd int) error {
	if pidfd < 0 {
		return waitExitBlocking(pid)
	}
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return fmt.Errorf("localrun: pidfd: %w", err)
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("localrun: pidfd: %w", err)
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			var info unix.Siginfo
			werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
			if werr == unix.EINTR {
				continue
			}
			// With WNOHANG, a process that has not exited yet leaves info zeroed.
			return werr != nil || info.Signo != 0
		}
	})
	if err != nil {
		return fmt.Errorf("localrun: wait on pidfd: %w", err)
	}
	return werr
}

// waitExitBlocking blocks an OS thread until process pid has exited, without reaping it.
func waitExitBlocking(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err
		}
	}
}

// outcome turns how a script ended into its device's terminal update.
func outcome(state *os.ProcessState, signalled stopReason, timeoutSeconds int) task.DeviceUpdate {
	var u task.DeviceUpdate
	if state == nil {
		u.Status, u.Reason = task.DeviceFailed, "the script's end could not be observed"
		return u
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	if ws.Exited() {
		u.ExitCode = new(ws.ExitStatus())
	}
	switch {
	case signalled == stopCancel:
		u.Status, u.Reason = task.DeviceCancelled, "stopped because the task was cancelled"
	case signalled == stopDevice:
		u.Status, u.Reason = task.DeviceCancelled, stoppedReason
	case signalled == stopDeadline:
		u.Status, u.Reason = task.DeviceTimedOut, fmt.Sprintf("stopped at the task's deadline of %ds", timeoutSeconds)
	case ws.Exited() && ws.ExitStatus() == 0:
		u.Status = task.DeviceSucceeded
	case ws.Exited():
		u.Status = task.DeviceFailed
	default:
		u.Status = task.DeviceFailed
		u.Reason = fmt.Sprintf("the script was killed by signal %s", unix.SignalName(ws.Signal()))
	}
	return u
}

// startError words an error from starting a script for the caller.
func startError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, syscall.ENOEXEC) {
			return "it is neither a binary nor a script with a #! line"
		}
		// The operation and the cause, not the path: the reason is shown to the caller, and
		// the server's own paths are none of their business (the log has the whole error).
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
