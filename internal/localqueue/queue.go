// Package localqueue is the in-process queue of `fleetrun serve`: it plays the part SQS plays on
// AWS, handing engine messages to the executor on a few worker goroutines. It is not durable,
// and need not be: the embedded store is, and on start the server re-queues every task that is
// not finished (see serve).
package localqueue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
)

// Handler executes one message; an error means "deliver again later", as with SQS.
type Handler func(ctx context.Context, m engine.Message) error

// Queue delivers messages to a Handler. The zero value is not usable; call New.
type Queue struct {
	handle   Handler
	log      *slog.Logger
	messages chan engine.Message
	ctx      context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	// MaxAttempts bounds redeliveries of a failing message; after that it is logged and
	// dropped, the local equivalent of a dead-letter queue.
	maxAttempts int
	backoff     time.Duration
}

// Options tune a Queue.
type Options struct {
	Workers     int           // default 4
	MaxAttempts int           // default 5
	Backoff     time.Duration // first redelivery delay, doubled each time; default 500ms
	Logger      *slog.Logger
}

// New starts a queue whose workers call handle.
func New(handle Handler, opts Options) *Queue {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	q := &Queue{handle: handle, log: opts.Logger, messages: make(chan engine.Message, 1024),
		ctx: ctx, stop: stop, maxAttempts: opts.MaxAttempts, backoff: opts.Backoff}
	for range opts.Workers {
		q.wg.Add(1)
		go q.work()
	}
	return q
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("localqueue: closed")

// Send queues m for delivery after delay. It never blocks on the workers.
func (q *Queue) Send(ctx context.Context, m engine.Message, delay time.Duration) error {
	if q.ctx.Err() != nil {
		return ErrClosed
	}
	if delay <= 0 {
		select {
		case q.messages <- m:
			return nil
		default:
			// The buffer is full: deliver from a goroutine rather than block the caller.
		}
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-q.ctx.Done():
			return
		}
		select {
		case q.messages <- m:
		case <-q.ctx.Done():
		}
	}()
	return nil
}

func (q *Queue) work() {
	defer q.wg.Done()
	for {
		select {
		case <-q.ctx.Done():
			return
		case m := <-q.messages:
			q.deliver(m)
		}
	}
}

// deliver runs the handler, and on failure sends the message again with backoff, counting the
// attempt in the message as SQS counts receives.
func (q *Queue) deliver(m engine.Message) {
	err := q.handle(q.ctx, m)
	if err == nil || q.ctx.Err() != nil {
		return
	}
	attempt := m.Attempt + 1
	if errors.Is(err, engine.ErrMalformed) || attempt >= q.maxAttempts {
		q.log.Error("message dropped after failing", "task_id", m.TaskID, "action", m.Action, "attempts", attempt, "err", err)
		return
	}
	q.log.Warn("message failed; will retry", "task_id", m.TaskID, "action", m.Action, "attempt", attempt, "err", err)
	m.Attempt = attempt
	_ = q.Send(q.ctx, m, q.backoff<<min(attempt-1, 6))
}

// Close stops the workers and drops undelivered messages; the store still has every task, and
// the next start re-queues the unfinished ones.
func (q *Queue) Close() {
	q.stop()
	q.wg.Wait()
}
