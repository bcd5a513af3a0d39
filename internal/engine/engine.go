// Package engine is fleetrun's service layer: submitting, reading and cancelling tasks for the
// HTTP API, and executing them for the queue consumer. It is transport-agnostic: the Lambda
// functions and `fleetrun serve` wire the same Engine to different stores, queues, runners and
// publishers.
package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Runner runs a task's script on its devices and reports device updates back through
// Engine.Report (push, as the local runner does) or returns them from Poll (pull, as SSM does,
// see PolledRunner).
type Runner interface {
	// Start begins running t on its devices. It must be safe to call again for a task it has
	// already started (a redelivered dispatch): it resumes and never starts a device twice.
	Start(ctx context.Context, t *task.Task) error
	// Cancel asks every device of t still working to stop; the devices report cancelled.
	Cancel(ctx context.Context, t *task.Task) error
	// StopDevices asks the named devices of t to stop, or never to start, while the rest of t
	// runs on: a running device reports cancelled once it has stopped (or its own ending, if
	// it finished first). It is idempotent, and a device that has ended, or that this runner
	// never started and never will, is no error.
	StopDevices(ctx context.Context, t *task.Task, deviceIDs []string) error
}

// PolledRunner is a Runner that must be asked for progress (SSM). The executor calls Poll on
// every poll message and applies the updates it returns.
type PolledRunner interface {
	Runner
	Poll(ctx context.Context, t *task.Task) ([]task.DeviceUpdate, error)
}

// Publisher publishes one notification per terminal transition.
type Publisher interface {
	Publish(ctx context.Context, n task.Notification) error
}

// Queue hands messages to the executor. Delay postpones delivery (SQS DelaySeconds).
type Queue interface {
	Send(ctx context.Context, m Message, delay time.Duration) error
}

// Action is what a queue message asks the executor to do.
type Action string

const (
	// ActionDispatch starts a pending task, or resumes a running one.
	ActionDispatch Action = "dispatch"
	// ActionPoll asks a PolledRunner for progress and checks the task's deadline.
	ActionPoll Action = "poll"
	// ActionCancel stops the devices of a cancelling task.
	ActionCancel Action = "cancel"
	// ActionStopDevices stops the devices named in the message (a caller cancelled them one
	// by one) while the task runs on.
	ActionStopDevices Action = "stop-devices"
)

// MessageVersion is the version of the Message schema written by this code. Version 2 added
// DeviceIDs and ActionStopDevices, and Lease; a version 1 message, which has none of them,
// means what it always meant, so the executor takes both (MinMessageVersion).
const MessageVersion = 2

// MinMessageVersion is the oldest Message schema the executor still handles: messages written
// by the previous release may be in the queue when this one starts.
const MinMessageVersion = 1

// Message is the executor's queue message: small, versioned JSON.
type Message struct {
	Version int    `json:"v"`
	Action  Action `json:"action"`
	TaskID  string `json:"taskId"`
	Attempt int    `json:"attempt"`
	// Lease is the task's lease (Unix nanoseconds) when the message was sent, where the store
	// keeps leases: a poll chain continues only while the task still has the lease its message
	// carries, so that a chain the sweeper replaced, or a duplicated one, dies out.
	Lease int64 `json:"lease,omitempty"`
	// DeviceIDs are the devices an ActionStopDevices message is about.
	DeviceIDs []string `json:"deviceIds,omitempty"`
}

// Inventory names a home's devices with their tags: the managed nodes on AWS, the inventory
// file locally. Submit resolves a task's targets with it; GET /devices lists it.
type Inventory interface {
	// Resolve returns the ids of the devices that match r.Targets (task.InventoryDevice.Matches),
	// online ones only unless r.IncludeOffline, in a stable order, at most r.Limit of them.
	Resolve(ctx context.Context, r task.Resolution) ([]string, error)
	// List returns a page of the devices that match q.Targets, online or not.
	List(ctx context.Context, q task.InventoryQuery) (*task.InventoryPage, error)
}

// Notifier is told about every write that changed a task, so that long-polls and event streams
// in the same process can answer at once.
type Notifier interface {
	Notify(t *task.Task)
}

// Metrics is told what the engine measures, as it happens. Each method is called once per
// event however often SQS or EventBridge deliver it, by the writer whose conditional write made
// the change. Implementations must be safe for concurrent use and quick, and they only record:
// nothing they do can fail the work.
type Metrics interface {
	// TaskSubmitted: a new task was stored and queued (an idempotent replay is not counted).
	TaskSubmitted(ctx context.Context)
	// TaskDispatched: a pending task was moved to running and handed to its runner, which has
	// sent its first command (SSM) or started its first device (locally); latency runs from
	// the submission.
	TaskDispatched(ctx context.Context, latency time.Duration)
	// TaskFinished: a task reached the terminal status; duration runs from its submission to
	// its end, and devices are its final counts, so each device is counted once, when its
	// task ends (devices that never started count as cancelled).
	TaskFinished(ctx context.Context, status task.Status, duration time.Duration, devices task.Counts)
}

// Config wires an Engine. Store, Queue and Rules are required; the rest have defaults.
type Config struct {
	Store     task.Store
	Queue     Queue
	Runner    Runner
	Publisher Publisher
	Notifier  Notifier
	// Metrics records submissions, dispatches and finished tasks; nil records nothing.
	Metrics Metrics
	// Admission, when set, bounds the work queued behind the deployment (see Backlog).
	Admission Admission
	// Inventory resolves targets and lists devices; nil when the home has none, and then a
	// submit with targets is refused with a CodeInvalid error that says why.
	Inventory Inventory
	// Webhooks sends the webhook events tasks subscribe to; the zero value sends none.
	Webhooks Webhooks
	Rules    task.Rules
	// Retention is how long a finished task is kept.
	Retention time.Duration
	// PollInterval is the delay of the first progress poll after a dispatch; later polls back
	// off up to MaxPollInterval.
	PollInterval    time.Duration
	MaxPollInterval time.Duration
	// Leases, when set, keep a lease on every unfinished task, which Sweep relies on; nil (the
	// embedded store, whose server re-queues its unfinished tasks when it starts) sweeps
	// nothing. See sweep.go.
	Leases Leases
	// LeaseTime is how long an unfinished task may go without a dispatch, poll or cancel
	// looking at it before Sweep re-drives it: three of the longest poll periods by default.
	LeaseTime time.Duration
	// DispatchGrace is how long a new task may wait for its first dispatch (2 min by default).
	DispatchGrace time.Duration
	// DeadlineGrace is how long past its deadline Sweep leaves a task to the executor before it
	// ends the task itself (30 s by default).
	DeadlineGrace time.Duration
	Now           func() time.Time
	NewID         func() string
	Logger        *slog.Logger
}

// Engine is the service layer. It is safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger
	// publishing serialises the publishing of each task's notification (see ensurePublished).
	publishing keyedMutex
	hooks      *webhooks
}

// New returns an Engine for cfg, filling in defaults.
func New(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		now := cfg.Now
		cfg.NewID = func() string { return NewIDAt(now()) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.MaxPollInterval <= 0 {
		cfg.MaxPollInterval = 60 * time.Second
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = 3 * cfg.MaxPollInterval
	}
	if cfg.DispatchGrace <= 0 {
		cfg.DispatchGrace = 2 * time.Minute
	}
	if cfg.DeadlineGrace <= 0 {
		cfg.DeadlineGrace = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	return &Engine{cfg: cfg, log: cfg.Logger, hooks: newWebhooks(cfg.Webhooks)}
}

func (e *Engine) notify(t *task.Task) {
	if e.cfg.Notifier != nil && t != nil {
		e.cfg.Notifier.Notify(t)
	}
}

// noMetrics is the Metrics of a Config that sets none.
type noMetrics struct{}

func (noMetrics) TaskSubmitted(context.Context)                                         {}
func (noMetrics) TaskDispatched(context.Context, time.Duration)                         {}
func (noMetrics) TaskFinished(context.Context, task.Status, time.Duration, task.Counts) {}

// finished records a task that has just reached its terminal status.
func (e *Engine) finished(ctx context.Context, t *task.Task) {
	end := t.UpdatedAt
	if t.CompletedAt != nil {
		end = *t.CompletedAt
	}
	e.cfg.Metrics.TaskFinished(ctx, t.Status, since(t.CreatedAt, end), t.Counts)
}

// since is the time from start to end, never negative: on AWS the two may come from the clocks
// of different functions.
func since(start, end time.Time) time.Duration {
	return max(0, end.Sub(start))
}
