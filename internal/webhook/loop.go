package webhook

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Outbox is the durable queue of webhook jobs the Loop works through: the embedded store's
// (localstore.Store).
type Outbox interface {
	AddWebhook(ctx context.Context, job task.WebhookJob) (bool, error)
	UpdateWebhook(ctx context.Context, job task.WebhookJob) error
	RemoveWebhook(ctx context.Context, id string) error
	DueWebhooks(ctx context.Context, now time.Time, n int) ([]task.WebhookJob, time.Time, error)
}

// DeliverFunc makes the next attempt of a job and returns the job to try again, or nil when
// it is done with (engine.Engine.DeliverWebhook).
type DeliverFunc func(ctx context.Context, job task.WebhookJob) (*task.WebhookJob, error)

// LoopConfig wires a Loop. Outbox and Deliver are required.
type LoopConfig struct {
	Outbox  Outbox
	Deliver DeliverFunc
	// Workers bounds the attempts made at once; 8 when zero. A slow receiver holds one for at
	// most task.WebhookTimeout.
	Workers int
	// Now is the clock that decides what is due; time.Now when nil.
	Now func() time.Time
	// Logger discards when nil.
	Logger *slog.Logger
}

// Loop is `fleetrun serve`'s delivery loop: it takes the jobs that are due from the outbox,
// hands each to Deliver, and puts back the ones to retry, until its context ends. The outbox is
// in the same file as the tasks, so a job due before the server was stopped or killed is
// delivered after it starts again. Put, the engine's WebhookQueue, adds a job and wakes it.
type Loop struct {
	cfg  LoopConfig
	log  *slog.Logger
	wake chan struct{}
}

// NewLoop returns a Loop for cfg; Run starts it.
func NewLoop(cfg LoopConfig) *Loop {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Loop{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
}

// Put adds job to the outbox, unless the outbox holds that event already, and wakes the loop.
func (l *Loop) Put(ctx context.Context, job task.WebhookJob) error {
	added, err := l.cfg.Outbox.AddWebhook(ctx, job)
	if err != nil {
		return err
	}
	if added {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// batch is how many due jobs one round takes from the outbox.
const batch = 100

// retryStoreAfter is how long a job whose attempt could not be recorded waits before the next.
const retryStoreAfter = 5 * time.Second

// Step makes the attempts of every job due now, Workers at a time, puts back or removes each,
// and returns when the next job is due (zero when none is).
func (l *Loop) Step(ctx context.Context) (time.Time, error) {
	for {
		now := l.cfg.Now()
		jobs, next, err := l.cfg.Outbox.DueWebhooks(ctx, now, batch)
		if err != nil {
			return time.Time{}, err
		}
		sem := make(chan struct{}, l.cfg.Workers)
		var wg sync.WaitGroup
		for _, job := range jobs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				l.one(ctx, job)
			}()
		}
		wg.Wait()
		if len(jobs) < batch || ctx.Err() != nil {
			if len(jobs) > 0 {
				// What was just put back may be due before next.
				_, next, err = l.cfg.Outbox.DueWebhooks(ctx, l.cfg.Now(), 0)
			}
			return next, err
		}
	}
}

// one delivers one job and puts it back or takes it out.
func (l *Loop) one(ctx context.Context, job task.WebhookJob) {
	next, err := l.cfg.Deliver(ctx, job)
	switch {
	case err != nil:
		l.log.WarnContext(ctx, "webhook attempt not recorded; it is tried again", "event_id", job.ID, "err", err)
		job.NextAt = l.cfg.Now().Add(retryStoreAfter)
		err = l.cfg.Outbox.UpdateWebhook(context.WithoutCancel(ctx), job)
	case next == nil:
		err = l.cfg.Outbox.RemoveWebhook(context.WithoutCancel(ctx), job.ID)
	default:
		err = l.cfg.Outbox.UpdateWebhook(context.WithoutCancel(ctx), *next)
	}
	if err != nil {
		l.log.ErrorContext(ctx, "the webhook outbox could not be updated", "event_id", job.ID, "err", err)
	}
}

// maxIdle is the longest the loop sleeps without looking at the outbox, so that a clock moved
// by the system does not leave a job waiting long past its time.
const maxIdle = time.Minute

// Run calls Step until ctx ends, sleeping in between until the next job is due or Put adds one.
func (l *Loop) Run(ctx context.Context) {
	for ctx.Err() == nil {
		next, err := l.Step(ctx)
		wait := maxIdle
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.ErrorContext(ctx, "reading the webhook outbox failed", "err", err)
			wait = retryStoreAfter
		} else if !next.IsZero() {
			wait = min(max(next.Sub(l.cfg.Now()), 0), maxIdle)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-l.wake:
		}
		timer.Stop()
	}
}
