// Package watch tells long-polls and event streams when a task has changed.
package watch

import (
	"context"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Broker is an in-process change notifier: the engine calls Notify after every write, and
// waiters wake at once. It serves `fleetrun serve`, where every write happens in one process.
//
// It remembers the latest version notified for each task for a while, so that a write landing
// between a waiter's read and its call to Wait is not missed.
type Broker struct {
	mu    sync.Mutex
	now   func() time.Time
	tasks map[string]*entry
	swept time.Time
	// owners counts the writes to each owner's tasks, for streams of a whole task list. It
	// holds one small entry per owner that has written, which the tokens of a server bound.
	owners map[string]*ownerEntry
}

type ownerEntry struct {
	mark    uint64
	changed chan struct{}
}

type entry struct {
	version int64
	at      time.Time
	changed chan struct{}
}

// brokerMemory is how long a task's latest version is remembered after its last write. A
// waiter calls Wait right after reading the task, so this only has to outlast that gap.
const brokerMemory = time.Minute

// NewBroker returns an empty Broker.
func NewBroker() *Broker {
	return &Broker{now: time.Now, tasks: make(map[string]*entry), owners: make(map[string]*ownerEntry)}
}

// Notify records that t was written and wakes everyone waiting on it.
func (b *Broker) Notify(t *task.Task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	e := b.entry(t.ID, now)
	if t.Version > e.version {
		e.version = t.Version
		close(e.changed)
		e.changed = make(chan struct{})
	}
	e.at = now
	o := b.owner(t.Owner)
	o.mark++
	close(o.changed)
	o.changed = make(chan struct{})
	if now.Sub(b.swept) > brokerMemory {
		for id, e := range b.tasks {
			if now.Sub(e.at) > brokerMemory {
				delete(b.tasks, id)
			}
		}
		b.swept = now
	}
}

func (b *Broker) entry(id string, now time.Time) *entry {
	e, ok := b.tasks[id]
	if !ok {
		e = &entry{changed: make(chan struct{}), at: now}
		b.tasks[id] = e
	}
	return e
}

func (b *Broker) owner(owner string) *ownerEntry {
	o, ok := b.owners[owner]
	if !ok {
		o = &ownerEntry{changed: make(chan struct{})}
		b.owners[owner] = o
	}
	return o
}

// OwnerMark returns a mark of the writes to owner's tasks so far, for WaitOwner. A caller takes
// it before reading the owner's tasks, so that no write after the read goes unseen.
func (b *Broker) OwnerMark(owner string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owner(owner).mark
}

// WaitOwner blocks until a task of owner has been written since OwnerMark returned mark, or
// ctx ends (then it returns ctx's error).
func (b *Broker) WaitOwner(ctx context.Context, owner string, mark uint64) error {
	b.mu.Lock()
	o := b.owner(owner)
	if o.mark != mark {
		b.mu.Unlock()
		return nil
	}
	ch := o.changed
	b.mu.Unlock()
	return waitOn(ctx, ch)
}

// Wait blocks until a write to task id newer than version has been notified, or ctx ends. It
// returns ctx's error in the second case. Callers re-read the task after Wait returns.
func (b *Broker) Wait(ctx context.Context, id string, version int64) error {
	b.mu.Lock()
	now := b.now()
	e := b.entry(id, now)
	if e.version > version {
		b.mu.Unlock()
		return nil
	}
	e.at = now
	ch := e.changed
	b.mu.Unlock()
	return waitOn(ctx, ch)
}

// waitOn blocks until ch is closed, or ctx ends (then it returns ctx's error).
func waitOn(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Poller waits by re-reading the task from the store at an interval. It serves the Lambda
// functions, where the write that ends a wait happens in another process.
type Poller struct {
	Store    task.Store
	Interval time.Duration
}

// OwnerMark is always 0: the Poller cannot tell whether an owner's tasks have changed
// without reading them, which the caller does anyway.
func (p Poller) OwnerMark(string) uint64 { return 0 }

// WaitOwner waits one Interval, or until ctx ends: the writes that a Lambda function's stream
// of a task list waits for happen in other functions, so it can only re-read the list now and
// then and compare. Callers must therefore expect a wake without a change.
func (p Poller) WaitOwner(ctx context.Context, _ string, _ uint64) error {
	t := time.NewTimer(p.interval())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p Poller) interval() time.Duration {
	if p.Interval <= 0 {
		return time.Second
	}
	return p.Interval
}

// Wait blocks until the stored task id has a version newer than version, or ctx ends.
func (p Poller) Wait(ctx context.Context, id string, version int64) error {
	tick := time.NewTicker(p.interval())
	defer tick.Stop()
	for {
		t, err := p.Store.GetTask(ctx, id)
		if err != nil || t.Version > version {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
