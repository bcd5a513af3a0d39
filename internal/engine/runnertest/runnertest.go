// Package runnertest is the conformance suite of engine.Runner. The local runner and the SSM
// runner (over the SSM test server) run the same scenarios through the real engine and the
// embedded store: success, failure with an exit code, the task's deadline, a cancel while the
// devices run, a cancel of one device while the others run, output longer than the inline
// copy, and a restart of the runner mid-run.
//
// Where the runners genuinely differ, a Target states what its runner does in an Expect,
// instead of the suite skipping the scenario: the length of the inline copy of a long output,
// and what becomes of a device that was running when the runner restarted.
package runnertest

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Outcome is how a device's run of the script ends.
type Outcome int

const (
	// Succeed exits 0.
	Succeed Outcome = iota
	// Fail exits with the Behaviour's ExitCode.
	Fail
	// Hang runs until it is stopped.
	Hang
	// Slow is still running when the runner first reports it, and succeeds later.
	Slow
)

// Behaviour is what a device does when the task's script runs on it.
type Behaviour struct {
	Outcome  Outcome
	ExitCode int
	Stdout   string
	Stderr   string
}

// Reporter receives a push runner's device updates; the suite's engine satisfies it.
type Reporter interface {
	Report(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error)
}

// Env is what a Target's runner is wired to: the store, the engine as its reporter, and the
// suite's clock.
type Env struct {
	Store    task.Store
	Reporter Reporter
	Now      func() time.Time
}

// Expect is how a Target's runner behaves where runners genuinely differ.
type Expect struct {
	// StdoutLimit is the length of the inline stdout a device reports when its script wrote
	// more: the runner's own limit (the local runner's is task.StdoutInlineLimit; SSM's
	// ListCommandInvocations keeps 2,500 characters of output).
	StdoutLimit int
	// AfterRestart is what becomes of a Slow device that was running when the runner restarted:
	// failed, with a reason, for a runner whose work ends with its process (local), succeeded
	// for one whose work runs elsewhere and is found again (SSM).
	AfterRestart task.DeviceStatus
}

// Target is one runner under test.
type Target interface {
	// DeviceIDs returns n device ids the runner accepts.
	DeviceIDs(n int) []string
	// Rules are the submit rules of the runner's home.
	Rules() task.Rules
	// Script arranges for each device to behave as behave says when the script runs on it, and
	// returns the scriptUrl of the task.
	Script(t *testing.T, behave map[string]Behaviour) string
	// Start returns a new runner wired to env. A restart stops the runner and starts another
	// on the same env, as a new process of the same deployment.
	Start(t *testing.T, env Env) engine.Runner
	// Stop ends r as the end of its process would.
	Stop(t *testing.T, r engine.Runner)
	// Starts returns how many times the script was started on device id.
	Starts(t *testing.T, id string) int
	// StoppedAlone returns nil once device d's work has stopped and the runner stopped it
	// alone, leaving the task's other devices be (locally its process group is gone; on SSM
	// every CancelCommand so far named exactly d's instance), and what is missing otherwise.
	StoppedAlone(t *testing.T, d *task.Device) error
	// Expect says how the runner differs from others.
	Expect() Expect
}

// Run runs every scenario against the runner newTarget returns, each with a target of its own.
func Run(t *testing.T, newTarget func(t *testing.T) Target) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"Success", testSuccess},
		{"FailureWithExitCode", testFailure},
		{"Deadline", testDeadline},
		{"CancelMidRun", testCancel},
		{"CancelOneDeviceMidRun", testCancelOneDevice},
		{"OutputTruncation", testTruncation},
		{"RestartRecovery", testRestart},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, newHarness(t, newTarget(t)))
		})
	}
}

func testSuccess(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(2)
	tk := h.submit(t, 600, map[string]Behaviour{
		ids[0]: {Outcome: Succeed, Stdout: "hello from " + ids[0] + "\n", Stderr: "a warning\n"},
		ids[1]: {Outcome: Succeed, Stdout: "hello from " + ids[1] + "\n"},
	})
	done := h.settle(t, tk.ID, terminal)
	if done.Status != task.StatusCompleted || done.Counts.Succeeded != 2 {
		t.Fatalf("task %s with counts %+v, want completed with 2 succeeded", done.Status, done.Counts)
	}
	for i, id := range ids {
		d := h.device(t, tk.ID, id)
		wantErr := map[int]string{0: "a warning\n"}[i]
		if d.Status != task.DeviceSucceeded || d.ExitCode == nil || *d.ExitCode != 0 ||
			d.Stdout != "hello from "+id+"\n" || d.Stderr != wantErr || d.StdoutTruncated || d.StderrTruncated {
			t.Errorf("device %s = %+v; want succeeded, exit 0, its own output", id, d)
		}
		if d.CompletedAt == nil || d.Ref == "" {
			t.Errorf("device %s has no completion time or runner ref: %+v", id, d)
		}
		if n := h.target.Starts(t, id); n != 1 {
			t.Errorf("device %s was started %d times, want 1", id, n)
		}
	}
}

func testFailure(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(2)
	tk := h.submit(t, 600, map[string]Behaviour{
		ids[0]: {Outcome: Fail, ExitCode: 3, Stderr: "disk full\n"},
		ids[1]: {Outcome: Succeed},
	})
	done := h.settle(t, tk.ID, terminal)
	if done.Status != task.StatusCompleted || !slices.Equal(done.Result.FailedDevices, ids[:1]) ||
		!slices.Equal(done.Result.SucceededDevices, ids[1:]) {
		t.Fatalf("task %s with result %+v; want completed, %s failed", done.Status, done.Result, ids[0])
	}
	if d := h.device(t, tk.ID, ids[0]); d.Status != task.DeviceFailed || d.ExitCode == nil || *d.ExitCode != 3 || d.Stderr != "disk full\n" {
		t.Errorf("failed device = %+v; want failed, exit 3, its stderr", d)
	}
}

func testDeadline(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(2)
	// A runner that enforces the deadline itself (local) does so on a real timer, armed when the
	// devices start, while the engine judges the outcome by the suite's clock: the timeout is
	// short, and the clock passes the deadline as soon as a device is seen running, well before
	// the timer fires.
	const timeout = 2
	tk := h.submit(t, timeout, map[string]Behaviour{ids[0]: {Outcome: Succeed}, ids[1]: {Outcome: Hang}})
	h.settle(t, tk.ID, func(tk *task.Task) bool { return tk.Counts.Running > 0 || tk.Counts.Succeeded > 0 })
	h.clock.Advance(timeout*time.Second + time.Second)
	done := h.settle(t, tk.ID, terminal)
	if done.Status != task.StatusTimedOut || done.Counts.TimedOut != 1 || done.Counts.Succeeded != 1 {
		t.Fatalf("task %s with counts %+v, want timed_out with one device timed out", done.Status, done.Counts)
	}
	if d := h.device(t, tk.ID, ids[1]); d.Status != task.DeviceTimedOut || d.CompletedAt == nil {
		t.Errorf("the hanging device = %+v, want timed_out", d)
	}
}

func testCancel(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(2)
	tk := h.submit(t, 600, map[string]Behaviour{ids[0]: {Outcome: Hang}, ids[1]: {Outcome: Hang}})
	h.settle(t, tk.ID, func(tk *task.Task) bool { return tk.Counts.Running == 2 })
	cancelling, err := h.engine.Cancel(t.Context(), task.Caller{Owner: "alice"}, tk.ID)
	if err != nil || cancelling.Status != task.StatusCancelling {
		t.Fatalf("Cancel = %+v, %v; want cancelling", cancelling, err)
	}
	done := h.settle(t, tk.ID, terminal)
	if done.Status != task.StatusCancelled || done.Counts.Cancelled != 2 {
		t.Fatalf("task %s with counts %+v, want cancelled with both devices cancelled", done.Status, done.Counts)
	}
	for _, id := range ids {
		if d := h.device(t, tk.ID, id); d.Status != task.DeviceCancelled || d.StartedAt == nil {
			t.Errorf("device %s = %+v; want cancelled after it started", id, d)
		}
	}
}

func testCancelOneDevice(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(3)
	tk := h.submit(t, 600, map[string]Behaviour{ids[0]: {Outcome: Hang}, ids[1]: {Outcome: Hang}, ids[2]: {Outcome: Hang}})
	h.settle(t, tk.ID, func(tk *task.Task) bool { return tk.Counts.Running == 3 })
	got, d, err := h.engine.CancelDevice(t.Context(), task.Caller{Owner: "alice"}, tk.ID, ids[0])
	if err != nil || d.Status != task.DeviceRunning || d.CancelRequestedAt == nil || got.Status != task.StatusRunning {
		t.Fatalf("CancelDevice = %+v, %+v, %v; want the device running, marked, in a running task", got, d, err)
	}
	h.settle(t, tk.ID, func(tk *task.Task) bool { return tk.Counts.Cancelled == 1 })
	d = h.device(t, tk.ID, ids[0])
	if d.Status != task.DeviceCancelled || d.StartedAt == nil || d.CancelRequestedAt == nil {
		t.Fatalf("the cancelled device = %+v; want cancelled after it started, marked", d)
	}
	clocktest.Eventually(t, 20*time.Second, func() error { return h.target.StoppedAlone(t, d) })
	if cur := h.task(t, tk.ID); cur.Status != task.StatusRunning || cur.Counts.Running != 2 {
		t.Fatalf("after one device was cancelled the task is %s with %+v; want running with two running", cur.Status, cur.Counts)
	}
	// Cancelling the others one by one ends the task like any other: completed.
	for _, id := range ids[1:] {
		if _, _, err := h.engine.CancelDevice(t.Context(), task.Caller{Owner: "alice"}, tk.ID, id); err != nil {
			t.Fatalf("CancelDevice(%s) = %v", id, err)
		}
	}
	done := h.settle(t, tk.ID, terminal)
	if done.Status != task.StatusCompleted || done.Counts.Cancelled != 3 || len(done.Result.CancelledDevices) != 3 {
		t.Fatalf("task %s with counts %+v and result %+v; want completed with the three devices cancelled",
			done.Status, done.Counts, done.Result)
	}
	for _, id := range ids {
		if n := h.target.Starts(t, id); n != 1 {
			t.Errorf("device %s was started %d times, want 1", id, n)
		}
	}
}

func testTruncation(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(1)
	long := strings.Repeat("0123456789", 3000) // longer than every runner's inline copy
	tk := h.submit(t, 600, map[string]Behaviour{ids[0]: {Outcome: Succeed, Stdout: long}})
	h.settle(t, tk.ID, terminal)
	d := h.device(t, tk.ID, ids[0])
	limit := h.target.Expect().StdoutLimit
	if len(d.Stdout) != limit || !strings.HasPrefix(long, d.Stdout) || !d.StdoutTruncated || d.Status != task.DeviceSucceeded {
		t.Errorf("device with %d bytes of stdout: %s, inline %d bytes, truncated %v; want succeeded, the first %d bytes, truncated",
			len(long), d.Status, len(d.Stdout), d.StdoutTruncated, limit)
	}
}

func testRestart(t *testing.T, h *harness) {
	ids := h.target.DeviceIDs(2)
	tk := h.submit(t, 600, map[string]Behaviour{ids[0]: {Outcome: Succeed}, ids[1]: {Outcome: Slow}})
	h.settle(t, tk.ID, func(tk *task.Task) bool { return tk.Counts.Succeeded == 1 && tk.Counts.Running == 1 })
	h.restart(t)
	done := h.settle(t, tk.ID, terminal)
	want := h.target.Expect().AfterRestart
	d := h.device(t, tk.ID, ids[1])
	if d.Status != want || done.Counts.Of(want) < 1 {
		t.Fatalf("the device running at the restart is %s (task %s, counts %+v); want %s", d.Status, done.Status, done.Counts, want)
	}
	if want != task.DeviceSucceeded && d.Reason == "" {
		t.Errorf("the device running at the restart ended %s without a reason", d.Status)
	}
	for _, id := range ids {
		if n := h.target.Starts(t, id); n != 1 {
			t.Errorf("device %s was started %d times across the restart, want 1", id, n)
		}
	}
	if d := h.device(t, tk.ID, ids[0]); d.Status != task.DeviceSucceeded {
		t.Errorf("the device that finished before the restart is %s, want succeeded", d.Status)
	}
}

func terminal(tk *task.Task) bool { return tk.Status.Terminal() }

// harness is one scenario's engine, store, queue and clock around a target's runner.
type harness struct {
	target Target
	store  *localstore.Store
	clock  *clocktest.Clock
	queue  *queue
	rep    *reporter
	runner engine.Runner
	engine *engine.Engine
}

func newHarness(t *testing.T, target Target) *harness {
	t.Helper()
	clock := clocktest.New(time.Now().UTC().Truncate(time.Second))
	store, err := localstore.Open(filepath.Join(t.TempDir(), "fleetrun.db"), localstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	h := &harness{target: target, store: store, clock: clock, queue: &queue{}, rep: &reporter{}}
	h.start(t)
	t.Cleanup(func() { target.Stop(t, h.runner) })
	return h
}

// start starts the target's runner and an engine around it, as a process of the deployment.
func (h *harness) start(t *testing.T) {
	t.Helper()
	h.runner = h.target.Start(t, Env{Store: h.store, Reporter: h.rep, Now: h.clock.Now})
	h.engine = engine.New(engine.Config{Store: h.store, Queue: h.queue, Runner: h.runner, Rules: h.target.Rules(),
		Now: h.clock.Now, PollInterval: time.Second})
	h.rep.set(h.engine)
}

// restart stops the runner and starts another, with a new engine, then resumes the unfinished
// tasks as a restarted deployment does: a dispatch for each.
func (h *harness) restart(t *testing.T) {
	t.Helper()
	h.target.Stop(t, h.runner)
	h.queue.clear()
	h.start(t)
	active, err := h.store.Active(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range active {
		_ = h.queue.Send(t.Context(), engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: tk.ID}, 0)
	}
}

// submit submits a task for the devices of behave, with the given timeout.
func (h *harness) submit(t *testing.T, timeout int, behave map[string]Behaviour) *task.Task {
	t.Helper()
	ids := make([]string, 0, len(behave))
	for id := range behave {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	tk, _, err := h.engine.Submit(t.Context(), engine.Submission{Owner: "alice", Draft: task.Draft{DeviceIDs: ids,
		ScriptURL: h.target.Script(t, behave), TimeoutSeconds: &timeout}})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return tk
}

// settle delivers the queued messages, over and over, until the task satisfies done.
func (h *harness) settle(t *testing.T, id string, done func(*task.Task) bool) *task.Task {
	t.Helper()
	var tk *task.Task
	clocktest.Eventually(t, 20*time.Second, func() error {
		for _, m := range h.queue.take() {
			if err := h.engine.Handle(t.Context(), m); err != nil {
				return fmt.Errorf("handle %s: %w", m.Action, err)
			}
		}
		var err error
		if tk, err = h.store.GetTask(t.Context(), id); err != nil {
			return err
		}
		if !done(tk) {
			return fmt.Errorf("task %s is %s with counts %+v", id, tk.Status, tk.Counts)
		}
		return nil
	})
	return tk
}

func (h *harness) task(t *testing.T, id string) *task.Task {
	t.Helper()
	tk, err := h.store.GetTask(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (h *harness) device(t *testing.T, taskID, id string) *task.Device {
	t.Helper()
	d, err := h.store.GetDevice(t.Context(), taskID, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// queue keeps messages until the suite delivers them; delays are ignored, since the suite
// delivers whatever is queued each time it looks.
type queue struct {
	mu   sync.Mutex
	msgs []engine.Message
}

func (q *queue) Send(_ context.Context, m engine.Message, _ time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

func (q *queue) take() []engine.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.msgs
	q.msgs = nil
	return out
}

func (q *queue) clear() { q.take() }

// reporter hands a runner's reports to the engine of the moment: the runner is built before
// its engine, and a restart builds both again.
type reporter struct {
	mu  sync.Mutex
	eng *engine.Engine
}

func (r *reporter) set(e *engine.Engine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eng = e
}

func (r *reporter) Report(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error) {
	r.mu.Lock()
	e := r.eng
	r.mu.Unlock()
	return e.Report(ctx, taskID, updates)
}
