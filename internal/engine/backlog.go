package engine

import (
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Admission bounds the work queued behind a deployment. Submit asks it before it stores a task:
// Admit reserves room for that many pending devices, or returns an ErrUnavailable error, which
// the caller sees as 503 with Retry-After and which stores nothing. release gives the
// reservation up once the task is stored and counted, or refused.
type Admission interface {
	Admit(devices int) (release func(), err error)
}

// Notifiers returns a Notifier that tells each of ns, in order.
func Notifiers(ns ...Notifier) Notifier { return notifiers(ns) }

type notifiers []Notifier

func (ns notifiers) Notify(t *task.Task) {
	for _, n := range ns {
		n.Notify(t)
	}
}

// Backlog counts the devices waiting to run across every unfinished task, from the engine's
// notifications, and admits a submit only while the count, with the new task's devices, stays
// within its bound. It serves `fleetrun serve`, where every write goes through one engine in
// one process, so the notifications see every change. A task that alone is larger than the
// bound is admitted when nothing is queued, so that no valid task is refused for ever.
type Backlog struct {
	mu       sync.Mutex
	max      int
	now      func() time.Time
	tasks    map[string]backlogEntry
	pending  int // the sum of tasks' pending devices
	reserved int // devices of submits admitted and not yet counted
	swept    time.Time
}

// backlogEntry is what the Backlog knows of one task: from the newest version it was told of.
type backlogEntry struct {
	version int64
	pending int
	// ended is when the task reached a terminal state; the entry stays a while so that a late,
	// older notification cannot count the task again.
	ended time.Time
}

// backlogMemory is how long a finished task is remembered.
const backlogMemory = 10 * time.Minute

// BacklogConfig configures a Backlog.
type BacklogConfig struct {
	// MaxPending is the most devices that may wait to run across every task; it is required.
	MaxPending int
	// Active are the unfinished tasks to start from (a server's store after a restart); none
	// when nil.
	Active []*task.Task
	// Now is the clock that ages the memory of finished tasks; time.Now when nil.
	Now func() time.Time
}

// NewBacklog returns a Backlog for cfg.
func NewBacklog(cfg BacklogConfig) *Backlog {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Backlog{max: cfg.MaxPending, now: cfg.Now, tasks: make(map[string]backlogEntry)}
	for _, t := range cfg.Active {
		b.Notify(t)
	}
	return b
}

// Notify implements Notifier: it records t's pending devices, unless it was told of a newer
// version of t already.
func (b *Backlog) Notify(t *task.Task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	e, known := b.tasks[t.ID]
	if known && (t.Version < e.version || !e.ended.IsZero()) {
		return
	}
	b.pending -= e.pending
	e = backlogEntry{version: t.Version, pending: t.Counts.Pending}
	if t.Status.Terminal() {
		e.pending, e.ended = 0, now
	}
	b.pending += e.pending
	b.tasks[t.ID] = e
	if now.Sub(b.swept) > backlogMemory {
		for id, e := range b.tasks {
			if !e.ended.IsZero() && now.Sub(e.ended) > backlogMemory {
				delete(b.tasks, id)
			}
		}
		b.swept = now
	}
}

// Admit implements Admission.
func (b *Backlog) Admit(devices int) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	queued := b.pending + b.reserved
	if queued > 0 && queued+devices > b.max {
		return nil, task.Errorf(task.CodeUnavailable,
			"the server has %d devices waiting to run and queues at most %d; retry later", queued, b.max)
	}
	b.reserved += devices
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.reserved -= devices
			b.mu.Unlock()
		})
	}, nil
}

// Pending returns how many devices wait to run, with those of submits being stored.
func (b *Backlog) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pending + b.reserved
}
