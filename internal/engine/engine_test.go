package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/task"
)

// fakeRunner records what the engine asks of it; devices move only when a test reports them.
type fakeRunner struct {
	mu       sync.Mutex
	started  []string
	canceled []string
	stopped  []string // devices StopDevices was asked to stop
	startErr error
	updates  []task.DeviceUpdate // returned by Poll when poller is set
}

func (r *fakeRunner) Start(_ context.Context, t *task.Task) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = append(r.started, t.ID)
	return r.startErr
}

func (r *fakeRunner) Cancel(_ context.Context, t *task.Task) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.canceled = append(r.canceled, t.ID)
	return nil
}

func (r *fakeRunner) StopDevices(_ context.Context, _ *task.Task, ids []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = append(r.stopped, ids...)
	return nil
}

func (r *fakeRunner) count(list *[]string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(*list)
}

// pollingRunner is a fakeRunner that is also an engine.PolledRunner, as SSM is.
type pollingRunner struct{ fakeRunner }

func (r *pollingRunner) Poll(context.Context, *task.Task) ([]task.DeviceUpdate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.updates, nil
}

// queue records messages; tests deliver them by hand, in any order, as often as they like.
type queue struct {
	mu   sync.Mutex
	sent []sent
	err  error
}

type sent struct {
	m     engine.Message
	delay time.Duration
}

func (q *queue) Send(_ context.Context, m engine.Message, delay time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return q.err
	}
	q.sent = append(q.sent, sent{m, delay})
	return nil
}

func (q *queue) actions() []engine.Action {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []engine.Action
	for _, s := range q.sent {
		out = append(out, s.m.Action)
	}
	return out
}

// take returns the messages sent so far and forgets them.
func (q *queue) take() []sent {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.sent
	q.sent = nil
	return out
}

type publisher struct {
	mu       sync.Mutex
	sent     []task.Notification
	failures int // the next failures calls fail, as an EventBridge outage would
}

func (p *publisher) Publish(_ context.Context, n task.Notification) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failures > 0 {
		p.failures--
		return errors.New("event bus unavailable")
	}
	p.sent = append(p.sent, n)
	return nil
}

func (p *publisher) all() []task.Notification {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.sent)
}

type bundle struct {
	eng    *engine.Engine
	store  task.Store
	runner *fakeRunner
	queue  *queue
	pub    *publisher
	clock  *clocktest.Clock
}

// openStore opens a fresh embedded store on a clock of its own.
func openStore(t *testing.T) (*localstore.Store, *clocktest.Clock) {
	t.Helper()
	clock := clocktest.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	store, err := localstore.Open(filepath.Join(t.TempDir(), "db"), localstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, clock
}

func setup(t *testing.T, runner engine.Runner) *bundle {
	t.Helper()
	store, clock := openStore(t)
	b := &bundle{store: store, queue: &queue{}, pub: &publisher{}, clock: clock}
	if runner == nil {
		b.runner = &fakeRunner{}
		runner = b.runner
	}
	b.eng = engine.New(engine.Config{Store: store, Queue: b.queue, Runner: runner, Publisher: b.pub,
		Rules: task.Rules{DeviceID: task.LocalDeviceID}, Now: clock.Now, Retention: time.Hour})
	return b
}

func (b *bundle) submit(t *testing.T, devices ...string) *task.Task {
	t.Helper()
	tk, created, err := b.eng.Submit(context.Background(), engine.Submission{Owner: "alice",
		Draft: task.Draft{DeviceIDs: devices, ScriptURL: "hello.sh"}})
	if err != nil || !created {
		t.Fatalf("submit: %v (created %v)", err, created)
	}
	return tk
}

func (b *bundle) handle(t *testing.T, action engine.Action, id string) {
	t.Helper()
	if err := b.eng.Handle(context.Background(), engine.Message{Version: engine.MessageVersion, Action: action, TaskID: id}); err != nil {
		t.Fatalf("handle %s: %v", action, err)
	}
}

func (b *bundle) report(t *testing.T, id string, status task.DeviceStatus, devices ...string) *task.Task {
	t.Helper()
	var ups []task.DeviceUpdate
	for _, d := range devices {
		ups = append(ups, task.DeviceUpdate{DeviceID: d, Status: status, At: b.clock.Now()})
	}
	tk, err := b.eng.Report(context.Background(), id, ups)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestSubmitValidatesBeforeStoringOrQueueing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, _, err := b.eng.Submit(context.Background(), engine.Submission{Owner: "alice",
		Draft: task.Draft{DeviceIDs: []string{"a", "a"}, ScriptURL: ""}})
	var te *task.Error
	if !errors.As(err, &te) || te.Code != task.CodeInvalid || len(te.Fields) != 2 {
		t.Fatalf("err = %v, want invalid with 2 fields", err)
	}
	page, err := b.store.ListTasks(context.Background(), task.ListQuery{Owner: "alice", Limit: 10})
	if err != nil || len(page.Tasks) != 0 || len(b.queue.actions()) != 0 {
		t.Fatalf("stored %d tasks, queued %v after a bad submit", len(page.Tasks), b.queue.actions())
	}
}

func TestSubmitThatCannotBeQueuedFailsTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.queue.err = errors.New("queue down")
	_, _, err := b.eng.Submit(context.Background(), engine.Submission{Owner: "alice",
		Draft: task.Draft{DeviceIDs: []string{"a"}, ScriptURL: "hello.sh"}})
	if !task.IsCode(err, task.CodeUnavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	page, _ := b.store.ListTasks(context.Background(), task.ListQuery{Owner: "alice", Limit: 10})
	if len(page.Tasks) != 1 || page.Tasks[0].Status != task.StatusFailed {
		t.Fatalf("tasks = %+v, want one failed task, never left pending", page.Tasks)
	}
}

func TestDispatchIsIdempotentAndFinishesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tk := b.submit(t, "a", "b", "c")
	if got := b.queue.actions(); !slices.Equal(got, []engine.Action{engine.ActionDispatch}) {
		t.Fatalf("queued %v, want one dispatch", got)
	}
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.handle(t, engine.ActionDispatch, tk.ID) // SQS delivers twice
	got, _ := b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID)
	if got.Status != task.StatusRunning || got.StartedAt == nil {
		t.Fatalf("after dispatch: %s", got.Status)
	}
	if n := b.runner.count(&b.runner.started); n != 2 {
		t.Fatalf("runner started %d times, want 2 (the second is a resume)", n)
	}

	b.report(t, tk.ID, task.DeviceRunning, "a", "b", "c")
	b.report(t, tk.ID, task.DeviceSucceeded, "a", "c")
	// The failure is reported four times, concurrently, as duplicated deliveries would. The
	// goroutines only collect their errors: a test may fail only from its own goroutine.
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = b.eng.Report(context.Background(), tk.ID,
				[]task.DeviceUpdate{{DeviceID: "b", Status: task.DeviceFailed, At: b.clock.Now()}})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("a duplicated report failed: %v", err)
	}
	done, _ := b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID)
	if done.Status != task.StatusCompleted {
		t.Fatalf("status = %s, want completed (maxErrors defaults to 100%%)", done.Status)
	}
	if !slices.Equal(done.Result.FailedDevices, []string{"b"}) || !slices.Equal(done.Result.SucceededDevices, []string{"a", "c"}) {
		t.Fatalf("result = %+v", done.Result)
	}
	if done.ExpiresAt.IsZero() || done.CompletedAt == nil {
		t.Fatalf("finished task has no expiry or completion time: %+v", done)
	}
	if n := b.pub.all(); len(n) != 1 || n[0].ID != tk.ID+":completed" {
		t.Fatalf("published %+v, want exactly one completed event", n)
	}
}

func TestMaxErrorsExceededFailsTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tk, _, err := b.eng.Submit(context.Background(), engine.Submission{Owner: "alice",
		Draft: task.Draft{DeviceIDs: []string{"a", "b", "c"}, ScriptURL: "x.sh", MaxErrors: new("1")}})
	if err != nil {
		t.Fatal(err)
	}
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.report(t, tk.ID, task.DeviceFailed, "a", "b")
	done := b.report(t, tk.ID, task.DeviceCancelled, "c")
	if done.Status != task.StatusFailed || done.Result.Reason == "" {
		t.Fatalf("status %s reason %q, want failed with a reason", done.Status, done.Result.Reason)
	}
}

func TestCancelSemantics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)

	// pending → cancelled at once; a late dispatch starts nothing.
	p := b.submit(t, "a")
	c, err := b.eng.Cancel(ctx, task.Caller{Owner: "alice"}, p.ID)
	if err != nil || c.Status != task.StatusCancelled {
		t.Fatalf("cancel pending: %v %v", c, err)
	}
	b.handle(t, engine.ActionDispatch, p.ID)
	if n := b.runner.count(&b.runner.started); n != 0 {
		t.Fatalf("a cancelled task was started")
	}
	if again, err := b.eng.Cancel(ctx, task.Caller{Owner: "alice"}, p.ID); err != nil || again.Version != c.Version {
		t.Fatalf("repeated cancel: %v %v, want the task unchanged", again, err)
	}

	// running → cancelling, the runner is asked to stop, and the devices' confirmation ends it.
	r := b.submit(t, "a", "b")
	b.handle(t, engine.ActionDispatch, r.ID)
	b.report(t, r.ID, task.DeviceRunning, "a", "b")
	b.report(t, r.ID, task.DeviceSucceeded, "a")
	c, err = b.eng.Cancel(ctx, task.Caller{Owner: "alice"}, r.ID)
	if err != nil || c.Status != task.StatusCancelling {
		t.Fatalf("cancel running: %v %v", c, err)
	}
	if _, err := b.eng.Cancel(ctx, task.Caller{Owner: "alice"}, r.ID); err != nil {
		t.Fatalf("repeated cancel of a cancelling task: %v", err)
	}
	b.handle(t, engine.ActionCancel, r.ID)
	if n := b.runner.count(&b.runner.canceled); n == 0 {
		t.Fatal("the runner was not asked to cancel")
	}
	done := b.report(t, r.ID, task.DeviceCancelled, "b")
	if done.Status != task.StatusCancelled || !slices.Equal(done.Result.SucceededDevices, []string{"a"}) {
		t.Fatalf("after confirmation: %s %+v", done.Status, done.Result)
	}

	// A finished task cannot be cancelled, and the error carries its status.
	f := b.submit(t, "a")
	b.handle(t, engine.ActionDispatch, f.ID)
	b.report(t, f.ID, task.DeviceSucceeded, "a")
	_, err = b.eng.Cancel(ctx, task.Caller{Owner: "alice"}, f.ID)
	var te *task.Error
	if !errors.As(err, &te) || te.Code != task.CodeConflict || te.Status != task.StatusCompleted {
		t.Fatalf("cancel completed: %v", err)
	}

	// Another owner's task does not exist for the caller.
	if _, err := b.eng.Cancel(ctx, task.Caller{Owner: "mallory"}, f.ID); !task.IsCode(err, task.CodeNotFound) {
		t.Fatalf("cancel by another owner: %v", err)
	}
	statuses := map[task.Status]int{}
	for _, n := range b.pub.all() {
		statuses[n.Status]++
	}
	if statuses[task.StatusCancelled] != 2 || statuses[task.StatusCompleted] != 1 {
		t.Fatalf("published %v, want 2 cancelled and 1 completed", statuses)
	}
}

func TestStartRefusedAsInvalidFailsTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.runner.startErr = task.Errorf(task.CodeInvalid, "script vanished")
	tk := b.submit(t, "a")
	b.handle(t, engine.ActionDispatch, tk.ID)
	got, _ := b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID)
	if got.Status != task.StatusFailed || got.Result == nil || got.Result.Reason == "" {
		t.Fatalf("status %s result %+v, want failed with a reason", got.Status, got.Result)
	}
	// The device never started: it is cancelled, in the counts, the result and its own state.
	if got.Counts.Cancelled != 1 || got.Counts.Pending != 0 || !slices.Equal(got.Result.CancelledDevices, []string{"a"}) {
		t.Fatalf("counts %+v result %+v, want the device cancelled", got.Counts, got.Result)
	}
	if d, err := b.eng.Device(context.Background(), task.Caller{Owner: "alice"}, tk.ID, "a"); err != nil || d.Status != task.DeviceCancelled {
		t.Fatalf("device = %+v, %v; want cancelled", d, err)
	}
}

func TestPollingEnforcesTheDeadline(t *testing.T) {
	t.Parallel()
	runner := &pollingRunner{}
	b := setup(t, runner)
	tk, _, err := b.eng.Submit(context.Background(), engine.Submission{Owner: "alice",
		Draft: task.Draft{DeviceIDs: []string{"fast", "never"}, ScriptURL: "x.sh", TimeoutSeconds: new(60)}})
	if err != nil {
		t.Fatal(err)
	}
	b.handle(t, engine.ActionDispatch, tk.ID)
	runner.mu.Lock()
	runner.updates = []task.DeviceUpdate{{DeviceID: "fast", Status: task.DeviceSucceeded, At: b.clock.Now()},
		{DeviceID: "never", Status: task.DeviceRunning, At: b.clock.Now()}}
	runner.mu.Unlock()

	b.handle(t, engine.ActionPoll, tk.ID)
	got, _ := b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID)
	if got.Status != task.StatusRunning || got.Counts.Succeeded != 1 || got.Counts.Running != 1 {
		t.Fatalf("before the deadline: %s %+v", got.Status, got.Counts)
	}
	polls := 0
	for _, a := range b.queue.actions() {
		if a == engine.ActionPoll {
			polls++
		}
	}
	if polls != 2 {
		t.Fatalf("queued %d polls, want one after dispatch and one after the first poll", polls)
	}

	b.clock.Advance(61 * time.Second)
	b.handle(t, engine.ActionPoll, tk.ID)
	got, _ = b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID)
	if got.Status != task.StatusTimedOut || got.Counts.TimedOut != 1 || got.Counts.Succeeded != 1 {
		t.Fatalf("after the deadline: %s %+v", got.Status, got.Counts)
	}
	if n := runner.count(&runner.canceled); n == 0 {
		t.Fatal("the runner was not asked to stop the devices at the deadline")
	}
}

func TestMalformedMessagesAreMarked(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tk := b.submit(t, "a")
	for _, m := range []engine.Message{
		{Version: 99, Action: engine.ActionDispatch, TaskID: tk.ID},
		{Version: engine.MessageVersion, Action: engine.ActionDispatch},
		{Version: engine.MessageVersion, Action: "explode", TaskID: tk.ID},
	} {
		if err := b.eng.Handle(context.Background(), m); !errors.Is(err, engine.ErrMalformed) {
			t.Errorf("Handle(%+v) = %v, want ErrMalformed", m, err)
		}
	}
	// A message for a task that no longer exists is dropped, not retried forever.
	if err := b.eng.Handle(context.Background(), engine.Message{Version: engine.MessageVersion,
		Action: engine.ActionPoll, TaskID: "01JDZZZZZZZZZZZZZZZZZZZZZZ"}); err != nil {
		t.Errorf("message for an unknown task: %v", err)
	}
}

func TestCancelOfAPolledTaskQueuesAPoll(t *testing.T) {
	t.Parallel()
	runner := &pollingRunner{}
	runner.startErr = engine.ErrIncomplete // the dispatch stops half way, as near a Lambda deadline
	b := setup(t, runner)
	tk := b.submit(t, "a", "b")
	b.handle(t, engine.ActionDispatch, tk.ID)
	if _, err := b.eng.Cancel(context.Background(), task.Caller{Owner: "alice"}, tk.ID); err != nil {
		t.Fatal(err)
	}
	before := len(b.queue.actions())
	b.handle(t, engine.ActionCancel, tk.ID)
	after := b.queue.actions()
	if len(after) != before+1 || after[len(after)-1] != engine.ActionPoll {
		t.Fatalf("after the cancel message the queue holds %v, want a poll added", after)
	}
	runner.mu.Lock()
	runner.updates = []task.DeviceUpdate{{DeviceID: "a", Status: task.DeviceCancelled, At: b.clock.Now()},
		{DeviceID: "b", Status: task.DeviceCancelled, At: b.clock.Now()}}
	runner.mu.Unlock()
	b.handle(t, engine.ActionPoll, tk.ID)
	if got, _ := b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID); got.Status != task.StatusCancelled {
		t.Fatalf("status %s after the poll, want cancelled", got.Status)
	}
}

func TestResumeFinishesATaskWhoseDevicesAllFinished(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tk := b.submit(t, "a")
	b.handle(t, engine.ActionDispatch, tk.ID)
	// The device's last update is written, but the process stops before the task is finished:
	// apply it straight to the store, as if the engine had died before finishing.
	if _, _, err := b.store.ApplyDeviceUpdates(context.Background(), tk.ID, []task.DeviceUpdate{
		{DeviceID: "a", Status: task.DeviceSucceeded, At: b.clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	b.handle(t, engine.ActionDispatch, tk.ID) // the resume after a restart
	if got, _ := b.eng.Get(context.Background(), task.Caller{Owner: "alice"}, tk.ID); got.Status != task.StatusCompleted {
		t.Fatalf("status %s after the resume, want completed", got.Status)
	}
}

func TestANotificationThatFailsIsRetriedByTheExecutor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	tk := b.submit(t, "a")
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.pub.failures = 2

	// The device's last report finishes the task, but the bus is down: the task stays
	// finished and a message is queued to retry the notification.
	before := len(b.queue.actions())
	done := b.report(t, tk.ID, task.DeviceSucceeded, "a")
	if done.Status != task.StatusCompleted || len(b.pub.all()) != 0 {
		t.Fatalf("status %s, published %d", done.Status, len(b.pub.all()))
	}
	if got := b.queue.actions(); len(got) != before+1 {
		t.Fatalf("queued %v, want one retry message", got)
	}
	if stored, _ := b.eng.Get(ctx, task.Caller{Owner: "alice"}, tk.ID); stored.Published {
		t.Fatal("the task is marked published though nothing was")
	}
	// The first delivery fails again (the message goes back to the queue); the second publishes.
	err := b.eng.Handle(ctx, engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: tk.ID})
	if err == nil {
		t.Fatal("a failed publish was not reported to the queue")
	}
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.handle(t, engine.ActionDispatch, tk.ID) // a duplicate delivery publishes nothing more
	if n := b.pub.all(); len(n) != 1 || n[0].Status != task.StatusCompleted {
		t.Fatalf("published %+v, want exactly one completed notification", n)
	}
	if stored, _ := b.eng.Get(ctx, task.Caller{Owner: "alice"}, tk.ID); !stored.Published {
		t.Fatal("the task is not marked published")
	}
}
