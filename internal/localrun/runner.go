// Package localrun is the runner of `fleetrun serve`: it runs a task's script once per device as
// a child process of the server and reports each device's progress to the engine.
//
// A device here is a name, not a machine: every device runs the same script on this host, in
// its own working directory (DataDir/work/<task>/<device>), with FLEETRUN_TASK_ID,
// FLEETRUN_DEVICE_ID and FLEETRUN_SERVER_ID added to the server's environment and the task's
// args passed as argv, never through a shell. Its stdout and stderr are kept whole on disk
// (DataDir/output/<task>/<device>/stdout|stderr, see OpenOutput); the reported copies are cut
// at task.StdoutInlineLimit and task.StderrInlineLimit characters.
//
// Each script runs in a process group of its own, recorded in the device's Ref as
// "pgid:<n>", so that stopping a device stops everything the script started, and a restarted
// server can find and stop what a previous life left behind. When the script exits, whatever
// it left running is killed too: no work outlives the device's report. Where this process may
// create cgroups, each script also runs in a cgroup of its own (see cgroups), which holds what
// leaves the group or the session (setsid, a double-forking daemon) too; elsewhere, with
// Config.Subreaper, the server adopts such a process once its parent exits and kills it when
// its device has finished (see reaper). What a server that died left behind, the next one
// stops (StopLeftovers).
//
// A script is waited for through a pidfd in the runtime's poller (see waitExit), so a running
// script costs a goroutine, not an OS thread, and Config.MaxProcs caps how many run at once
// across every task (see pool).
//
// Outcomes: exit 0 is succeeded, any other exit failed with its exit code. A script ended by a
// signal it was not sent by the runner is failed with no exit code (nil) and the signal named
// in the device's reason. A script the runner stopped is cancelled (Cancel) or timed_out (the
// task's deadline) whatever its exit code, which is kept when it exited and nil when the signal
// killed it. maxConcurrency bounds how many scripts of a task run at once, within the server's
// cap; once more devices have failed or timed out than maxErrors allows, no further device
// starts and the rest are reported cancelled.
//
// Wiring: the engine reports for the runner and the runner is part of the engine, so build the
// runner without a Reporter, build the engine with the runner, then call SetReporter(engine).
package localrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Reporter receives device updates; *engine.Engine satisfies it.
type Reporter interface {
	Report(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error)
}

// Stepper is told what a task is doing when the runner knows more than the task's status says:
// that devices wait for a free slot under the server's cap, and that they no longer do (an
// empty step). *engine.Engine satisfies it; a Reporter that is also a Stepper is told.
type Stepper interface {
	SetStep(ctx context.Context, taskID, step string) error
}

// DeviceLister reads a task's devices as stored; a task.Store satisfies it.
type DeviceLister interface {
	ListDevices(ctx context.Context, taskID string, q task.DeviceQuery) (*task.DevicePage, error)
	GetDevice(ctx context.Context, taskID, deviceID string) (*task.Device, error)
}

// DefaultGrace is how long a stopped script has between SIGTERM and SIGKILL by default.
const DefaultGrace = 5 * time.Second

// Config wires a Runner. ScriptRoot, DataDir and Devices are required.
type Config struct {
	// ScriptRoot is the directory that scriptUrls are resolved under (see ResolveScript).
	ScriptRoot string
	// DataDir holds the devices' working directories and full output. It is created if missing.
	DataDir string
	// Reporter receives device updates. The engine that does the reporting needs the runner
	// before it exists, so it may be left nil here and set with SetReporter before the first
	// Start.
	Reporter Reporter
	// Devices reads a task's devices, to resume after a restart and to cancel a task this
	// process is not running.
	Devices DeviceLister
	// Grace is how long a script has to exit after SIGTERM before its group gets SIGKILL.
	Grace time.Duration
	// OutputInterval is how often the inline output of running devices is refreshed from
	// what their scripts have written: at most one store write per task per interval, and
	// only when some device's output grew. DefaultOutputInterval when zero; a negative value
	// turns the refresh off, so a device's output appears when it ends.
	OutputInterval time.Duration
	// MaxProcs caps the scripts running at once across every task, shared fairly between the
	// tasks that wait (a task's maxConcurrency is then an upper bound, not a promise). Zero
	// means DefaultMaxProcs().
	MaxProcs int
	// Subreaper makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): a process that
	// a script leaves behind when its parent exits, setsid or not, becomes the server's child
	// instead of init's, and is killed once its device has finished. The runner then reaps
	// every child it did not start itself, so only a process whose children are all the
	// runner's may set it, as `fleetrun serve` does; tests in a shared process leave it off.
	Subreaper bool
	// NoCgroups runs scripts without a cgroup each even where this process may create cgroups.
	// By default every script runs in a cgroup v2 of its own where the kernel and permissions
	// allow it (see cgroups), and only its process group otherwise.
	NoCgroups bool
	// Now is the clock; it is read when a run starts to know how long is left until the
	// task's deadline.
	Now    func() time.Time
	Logger *slog.Logger
}

// Runner runs tasks' scripts as child processes. It implements engine.Runner and is safe for
// concurrent use.
type Runner struct {
	cfg Config
	log *slog.Logger
	// ctx outlives every request: runs and their reports use it, and Shutdown ends it.
	ctx    context.Context
	cancel context.CancelFunc

	pool     *pool
	maxProcs int
	// identity is this process's envServerID, the mark on every script it starts.
	identity string
	// cg holds the scripts' cgroups; nil where the runner cannot use cgroups.
	cg *cgroups
	// children guards leaders, the scripts started and not yet reaped by os/exec, which the
	// reaper must leave alone.
	children sync.Mutex
	leaders  map[int]bool
	reaper   *reaper // nil unless Config.Subreaper
	// starting holds a token for each script being prepared and started: a few at once, one
	// per CPU and one more. The directory, pipes and cgroup made before each start are
	// blocking system calls: hundreds at once would each take an OS thread for nothing, and one
	// at a time left all but one CPU idle while they ran (forks are serialised by the runtime
	// anyway).
	starting chan struct{}

	mu       sync.Mutex
	reporter Reporter
	runs     map[string]*run // the tasks this process is running, by id
	closed   bool
	wg       sync.WaitGroup // one per run
}

// New returns a Runner for cfg, filling in defaults and creating DataDir.
func New(cfg Config) (*Runner, error) {
	if cfg.Devices == nil {
		return nil, errors.New("localrun: a DeviceLister is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("localrun: a data directory is required")
	}
	info, err := os.Stat(cfg.ScriptRoot)
	if err != nil {
		return nil, fmt.Errorf("localrun: script root: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("localrun: script root %s is not a directory", cfg.ScriptRoot)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("localrun: data directory: %w", err)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.OutputInterval == 0 {
		cfg.OutputInterval = DefaultOutputInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxProcs <= 0 {
		cfg.MaxProcs = DefaultMaxProcs()
	}
	identity, err := processIdentity(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("localrun: identify this process: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, pool: newPool(cfg.MaxProcs),
		starting: make(chan struct{}, runtime.GOMAXPROCS(0)+1),
		maxProcs: cfg.MaxProcs, identity: identity, leaders: make(map[int]bool),
		reporter: cfg.Reporter, runs: make(map[string]*run)}
	if !cfg.NoCgroups {
		if r.cg, err = openCgroups(identity); err != nil {
			r.log.Info("scripts run without cgroups: a script that leaves its process group is stopped only through the child subreaper",
				"reason", err.Error())
		}
	}
	if cfg.Subreaper {
		if err := r.startReaper(); err != nil {
			r.close()
			cancel()
			return nil, err
		}
	}
	return r, nil
}

// Contained reports how this runner keeps a script's processes together: "cgroup" when each
// script has a cgroup v2 of its own, "process group" otherwise.
func (r *Runner) Contained() string {
	if r.cg != nil {
		return "cgroup"
	}
	return "process group"
}

// SetReporter sets where device updates go. Wiring builds the runner, then the engine with the
// runner in it, then calls SetReporter(engine) before anything is dispatched; this breaks the
// cycle between the two. Runs already started keep the reporter they started with.
func (r *Runner) SetReporter(rep Reporter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reporter = rep
}

// Start runs t's script on its devices and returns at once; the devices run in the background
// and report through the Reporter, whatever happens to ctx.
//
// Start is idempotent. If this process is already running t it does nothing. Otherwise it
// reads t's devices: pending ones are run; terminal ones are left alone; running ones belong to
// a previous life of the server, so their recorded process groups are killed if they still
// exist and they are reported failed, because fleetrun does not run a script twice on a device
// that may have run it partly.
//
// A scriptUrl that no longer resolves (the file was removed after submit) is a task.CodeInvalid
// error, which the engine turns into a failed task.
func (r *Runner) Start(ctx context.Context, t *task.Task) error {
	if t.Status.Terminal() || t.Status == task.StatusCancelling {
		return nil // nothing may start any more; Cancel handles a cancelling task
	}
	if !safeElement(t.ID) {
		return task.Errorf(task.CodeInvalid, "task id %q cannot be used by the local runner", t.ID)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return task.Errorf(task.CodeUnavailable, "the local runner is shutting down")
	}
	if r.reporter == nil {
		r.mu.Unlock()
		return errors.New("localrun: start: no reporter set")
	}
	if _, ok := r.runs[t.ID]; ok {
		r.mu.Unlock()
		return nil
	}
	ru := newRun(t, r.reporter, r.cfg.Grace)
	r.runs[t.ID] = ru
	r.wg.Add(1)
	r.mu.Unlock()

	p, err := r.plan(ctx, t)
	if err != nil {
		r.forget(ru)
		return err
	}
	lost := r.stopLost(t.ID, p.lost, lostReason, task.DeviceFailed)
	lost = append(lost, r.stopLost(t.ID, p.asked, stoppedReason, task.DeviceCancelled)...)
	path, err := ResolveScript(r.cfg.ScriptRoot, t.Request.ScriptURL)
	if err != nil {
		if len(lost) > 0 {
			if _, rerr := ru.reporter.Report(ctx, t.ID, lost); rerr != nil {
				r.log.ErrorContext(ctx, "reporting devices lost in a restart failed", "task_id", t.ID, "err", rerr)
			}
		}
		r.forget(ru)
		return task.Errorf(task.CodeInvalid, "%s", err.Error())
	}
	r.log.InfoContext(ctx, "task run starting", "task_id", t.ID, "pending", len(p.pending), "lost", len(lost))
	go r.execute(ru, path, p.pending, lost, p.errors)
	return nil
}

// stoppedReason is why a device a caller cancelled alone is cancelled.
const stoppedReason = "stopped by request: the device was cancelled"

// lostReason is why a device that was running when the server stopped is failed.
const lostReason = "the server stopped while the script was running; fleetrun does not re-run a script that may have partly run"

// Cancel stops t's devices. It returns as soon as every running script's process group has
// been sent SIGTERM; the runner waits in the background, sends SIGKILL to a group still alive
// after Grace, and reports each stopped device cancelled, with the output it produced, once its
// process has exited. Devices not started yet are reported cancelled without running. Devices
// that finished before the cancel keep their own outcome. Killing the whole group means
// nothing the script started outlives the cancel.
//
// If this process is not running t (the server restarted), Cancel reads t's devices, kills the
// recorded process groups of running ones that still exist, and reports every device that is
// not terminal cancelled before it returns.
//
// Cancel is idempotent: repeating it changes nothing.
func (r *Runner) Cancel(ctx context.Context, t *task.Task) error {
	ru, rep, err := r.runOf(t.ID, "cancel")
	if ru != nil {
		ru.stop(stopCancel)
		return nil
	}
	if err != nil {
		return err
	}
	p, err := r.plan(ctx, t)
	if err != nil {
		return err
	}
	updates := r.stopLost(t.ID, append(p.lost, p.asked...), "stopped because the task was cancelled", task.DeviceCancelled)
	now := r.cfg.Now().UTC()
	for _, id := range p.pending {
		updates = append(updates, task.DeviceUpdate{DeviceID: id, Status: task.DeviceCancelled, At: now,
			Reason: "not started: the task was cancelled"})
	}
	for batch := range chunks(updates) {
		if _, err := rep.Report(ctx, t.ID, batch); err != nil {
			return fmt.Errorf("localrun: report cancelled devices of %s: %w", t.ID, err)
		}
	}
	return nil
}

// StopDevices stops the named devices of t while the rest of t runs on: a running script's
// process group gets SIGTERM, then SIGKILL after Grace, and the device reports cancelled once
// its script has exited (with the output it wrote); a device not started yet is skipped when
// its turn comes, and reported cancelled. A device that finished first keeps its outcome.
//
// If this process is not running t (the server restarted), the named devices that are running
// in the store belong to a previous life: their recorded process groups are killed, if they
// still exist, and they are reported cancelled before StopDevices returns. StopDevices is
// idempotent.
func (r *Runner) StopDevices(ctx context.Context, t *task.Task, deviceIDs []string) error {
	ru, rep, err := r.runOf(t.ID, "stop devices")
	if ru != nil {
		ru.stopDevices(deviceIDs)
		return nil
	}
	if err != nil {
		return err
	}
	var lost []*task.Device
	for _, id := range deviceIDs {
		d, err := r.cfg.Devices.GetDevice(ctx, t.ID, id)
		if task.IsCode(err, task.CodeNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("localrun: read device %s of %s: %w", id, t.ID, err)
		}
		if d.Status == task.DeviceRunning {
			lost = append(lost, d)
		}
	}
	updates := r.stopLost(t.ID, lost, stoppedReason, task.DeviceCancelled)
	if len(updates) == 0 {
		return nil
	}
	if _, err := rep.Report(ctx, t.ID, updates); err != nil {
		return fmt.Errorf("localrun: report stopped devices of %s: %w", t.ID, err)
	}
	return nil
}

// runOf returns the run of task id when this process runs it; otherwise the reporter to
// report through what the caller does itself, or an error when the runner cannot (it is
// shutting down, or has no reporter yet). what names the caller in that error.
func (r *Runner) runOf(id, what string) (*run, Reporter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ru, ok := r.runs[id]; {
	case ok:
		return ru, nil, nil
	case r.closed:
		return nil, nil, task.Errorf(task.CodeUnavailable, "the local runner is shutting down")
	case r.reporter == nil:
		return nil, nil, fmt.Errorf("localrun: %s: no reporter set", what)
	}
	return nil, r.reporter, nil
}

// Shutdown stops every script this process runs (SIGTERM, then SIGKILL after Grace) and waits
// for them, or until ctx ends, when it kills what is left at once. It reports nothing: the
// devices stay running in the store, and the next Start after a restart reports them failed.
// The Runner cannot be used afterwards.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	runs := make([]*run, 0, len(r.runs))
	for _, ru := range r.runs {
		runs = append(runs, ru)
	}
	r.mu.Unlock()
	for _, ru := range runs {
		ru.stop(stopShutdown)
	}
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		r.cancel()
		r.close()
		return nil
	case <-ctx.Done():
		for _, ru := range runs {
			ru.killAll()
		}
		r.cancel()
		<-done
		r.close()
		return fmt.Errorf("localrun: shutdown: %w", ctx.Err())
	}
}

// close kills what the scripts left behind, in their cgroups and among this process's adopted
// children, and removes the runner's cgroups.
func (r *Runner) close() {
	if r.reaper != nil {
		r.reaper.stop()
	}
	if r.cg != nil {
		r.cg.close()
	}
}

// forget removes a finished run, so that a later Start reads the store again.
func (r *Runner) forget(ru *run) {
	r.mu.Lock()
	if r.runs[ru.id] == ru {
		delete(r.runs, ru.id)
	}
	r.mu.Unlock()
	r.wg.Done()
}
