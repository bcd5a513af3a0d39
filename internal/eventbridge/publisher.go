// Package eventbridge publishes one EventBridge event for every terminal transition of a task,
// so that rules can react to it. The event and its detail schema are documented in
// docs/events.md; Detail is that schema in Go.
package eventbridge

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

const (
	// Source is the source of every fleetrun event.
	Source = "fleetrun"
	// DetailType is the detail-type of every fleetrun event. There is one detail-type for all
	// terminal statuses, with the status in the detail, so that one rule can take every outcome
	// or pick some with a detail.status filter.
	DetailType = "Task Finished"
	// MaxEntrySize is EventBridge's limit on one PutEvents entry, measured as EventBridge
	// measures it (see entrySize). An entry must be smaller.
	MaxEntrySize = 256 * 1024
)

// API is the part of the EventBridge client that Publisher uses; *eventbridge.Client satisfies
// it.
type API interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// EntryError is EventBridge refusing the event itself although the request succeeded
// (PutEvents reports such failures per entry, with FailedEntryCount, not as an error).
type EntryError struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *EntryError) Error() string {
	return fmt.Sprintf("entry refused: %s: %s", e.Code, e.Message)
}

// Retryable reports whether EventBridge documents the entry's error as worth retrying.
func (e *EntryError) Retryable() bool {
	return e.Code == "ThrottlingException" || e.Code == "InternalFailure"
}

// Publisher puts task notifications on an event bus. It implements engine.Publisher.
type Publisher struct {
	client   API
	bus      string
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
	attempts int
	backoff  time.Duration
	log      *slog.Logger
}

var _ engine.Publisher = (*Publisher)(nil)

// Options tune a Publisher. The zero value is ready to use.
type Options struct {
	// Now is the clock, read for an event whose notification has no completion time;
	// time.Now when nil.
	Now func() time.Time
	// Attempts is how many times in all an entry that EventBridge throttled or failed
	// internally is tried; 4 when zero.
	Attempts int
	// Backoff is the first wait between two tries, doubled on each retry; 100 ms when zero.
	Backoff time.Duration
	// Sleep waits between tries, cut short by its context; tests replace it to retry without
	// waiting.
	Sleep func(context.Context, time.Duration) error
	// Logger receives retries and trimmed events; they are discarded when nil.
	Logger *slog.Logger
}

// New returns a Publisher that puts events on the bus busName (a name or an ARN; "" is the
// account's default bus) through client.
func New(client API, busName string, opts Options) *Publisher {
	p := &Publisher{client: client, bus: busName, now: opts.Now, sleep: opts.Sleep,
		attempts: opts.Attempts, backoff: opts.Backoff, log: opts.Logger}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	if p.attempts <= 0 {
		p.attempts = 4
	}
	if p.backoff <= 0 {
		p.backoff = 100 * time.Millisecond
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p
}

// Publish puts one "Task Finished" event for n. The event has no resources (a task has no ARN;
// rules match on detail.taskId), and its time is the task's completion time.
//
// The SDK's retryer (awsretry) already retries a throttled or failed request. PutEvents can also
// accept the request and refuse the entry, which no retryer sees: an entry refused as throttled
// or as an internal failure is retried here with backoff, and any other refusal is returned at
// once as an *EntryError.
func (p *Publisher) Publish(ctx context.Context, n task.Notification) error {
	entry, err := p.Entry(n)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry}})
		if err != nil {
			return fmt.Errorf("eventbridge: put event %s: %w", n.ID, err)
		}
		eerr := entryError(out)
		if eerr == nil {
			p.log.DebugContext(ctx, "event published", "task_id", n.TaskID, "status", n.Status, "event_id", eventID(out))
			return nil
		}
		if !eerr.Retryable() || attempt >= p.attempts {
			return fmt.Errorf("eventbridge: put event %s (attempt %d): %w", n.ID, attempt, eerr)
		}
		wait := p.backoff << (attempt - 1)
		wait = wait/2 + rand.N(wait/2+1) // jitter, so throttled publishers do not retry in step
		p.log.WarnContext(ctx, "event refused; retrying", "task_id", n.TaskID, "status", n.Status,
			"attempt", attempt, "code", eerr.Code, "wait", wait)
		if err := p.sleep(ctx, wait); err != nil {
			return fmt.Errorf("eventbridge: put event %s: %w (last refusal: %w)", n.ID, err, eerr)
		}
	}
}

// Entry builds the PutEvents entry for n, with device lists trimmed so that the entry stays
// under MaxEntrySize. Only terminal notifications become events.
func (p *Publisher) Entry(n task.Notification) (types.PutEventsRequestEntry, error) {
	if n.TaskID == "" || !n.Status.Terminal() {
		return types.PutEventsRequestEntry{}, task.Errorf(task.CodeInvalid,
			"a notification needs a task id and a terminal status, not %q for %q", n.Status, n.TaskID)
	}
	d := NewDetail(n)
	if d.CompletedAt.IsZero() {
		d.CompletedAt = p.now().UTC()
	}
	entry := types.PutEventsRequestEntry{
		Source:     aws.String(Source),
		DetailType: aws.String(DetailType),
		Time:       aws.Time(d.CompletedAt),
	}
	if p.bus != "" {
		entry.EventBusName = aws.String(p.bus)
	}
	detail, trimmed, err := fit(d, entrySize(entry), MaxEntrySize)
	if err != nil {
		return types.PutEventsRequestEntry{}, err
	}
	if trimmed {
		p.log.Info("device lists trimmed to fit the event size limit", "task_id", n.TaskID, "status", n.Status)
	}
	entry.Detail = aws.String(detail)
	return entry, nil
}

// entrySize is the size of an entry as EventBridge counts it against MaxEntrySize: 14 bytes for
// a time, and the UTF-8 bytes of the source, detail-type, detail and each resource.
func entrySize(e types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	if e.Time != nil {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// entryError returns the refusal of the single entry of out, or nil.
func entryError(out *eventbridge.PutEventsOutput) *EntryError {
	if out.FailedEntryCount == 0 {
		return nil
	}
	e := &EntryError{Code: "Unknown", Message: "PutEvents reported a failed entry without a reason"}
	if len(out.Entries) > 0 && out.Entries[0].ErrorCode != nil {
		e.Code, e.Message = aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)
	}
	return e
}

func eventID(out *eventbridge.PutEventsOutput) string {
	if len(out.Entries) == 0 {
		return ""
	}
	return aws.ToString(out.Entries[0].EventId)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
