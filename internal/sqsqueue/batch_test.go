package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/engine"
)

// logRecord is one captured log line.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

// captureHandler keeps every record logged through it.
type captureHandler struct {
	mu      sync.Mutex
	records []logRecord
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	return nil
}

// byMessageID returns the record logged about message id at level, if any.
func (h *captureHandler) byMessageID(id string, level slog.Level) (logRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.attrs["message_id"] == id && r.level == level {
			return r, true
		}
	}
	return logRecord{}, false
}

func record(id, body string, receiveCount int) events.SQSMessage {
	return events.SQSMessage{MessageId: id, Body: body,
		Attributes: map[string]string{"ApproximateReceiveCount": fmt.Sprint(receiveCount)}}
}

func body(action engine.Action, taskID string) string {
	return fmt.Sprintf(`{"v":1,"action":%q,"taskId":%q,"attempt":0}`, action, taskID)
}

func failedIDs(resp events.SQSEventResponse) []string {
	var ids []string
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return ids
}

func TestHandleBatchReportsExactlyTheFailures(t *testing.T) {
	t.Parallel()
	ev := events.SQSEvent{Records: []events.SQSMessage{
		record("ok", body(engine.ActionDispatch, "T-ok"), 1),
		record("err", body(engine.ActionPoll, "T-err"), 3),
		record("bad-json", `{"v":1,"action":`, 2),
		record("bad-version", `{"v":9,"action":"poll","taskId":"T"}`, 1),
		record("handler-malformed", body(engine.ActionCancel, "T-malformed"), 1),
		record("panic", body(engine.ActionPoll, "T-panic"), 1),
		record("ok2", body(engine.ActionCancel, "T-ok2"), 1),
	}}
	var handled []string
	handle := func(_ context.Context, m engine.Message) error {
		handled = append(handled, m.TaskID)
		switch m.TaskID {
		case "T-err":
			return errors.New("store unavailable")
		case "T-malformed":
			return fmt.Errorf("engine: action: %w", engine.ErrMalformed)
		case "T-panic":
			panic("nil map")
		}
		return nil
	}
	logs := &captureHandler{}
	resp := HandleBatch(context.Background(), ev, handle, slog.New(logs), nil)

	want := []string{"err", "bad-json", "bad-version", "handler-malformed", "panic"}
	if got := failedIDs(resp); !slices.Equal(got, want) {
		t.Errorf("failures = %v, want %v", got, want)
	}
	if want := []string{"T-ok", "T-err", "T-malformed", "T-panic", "T-ok2"}; !slices.Equal(handled, want) {
		t.Errorf("handled %v, want %v (malformed bodies never reach the handler)", handled, want)
	}
	for _, c := range []struct {
		id    string
		level slog.Level
		count int64
	}{
		{"err", slog.LevelWarn, 3},
		{"bad-json", slog.LevelError, 2},
		{"bad-version", slog.LevelError, 1},
		{"handler-malformed", slog.LevelError, 1},
		{"panic", slog.LevelError, 1},
		{"ok", slog.LevelDebug, 1},
	} {
		r, ok := logs.byMessageID(c.id, c.level)
		if !ok {
			t.Errorf("message %s: nothing logged at %v", c.id, c.level)
			continue
		}
		if r.attrs["receive_count"] != c.count {
			t.Errorf("message %s: receive_count = %v, want %d", c.id, r.attrs["receive_count"], c.count)
		}
	}
	if r, _ := logs.byMessageID("bad-json", slog.LevelError); r.attrs["body"] != `{"v":1,"action":` {
		t.Errorf("malformed body not logged: %v", r.attrs["body"])
	}
}

func TestHandleBatchAllGoodReportsNothing(t *testing.T) {
	t.Parallel()
	ev := events.SQSEvent{Records: []events.SQSMessage{
		record("a", body(engine.ActionDispatch, "A"), 1),
		record("b", body(engine.ActionPoll, "B"), 1),
	}}
	resp := HandleBatch(context.Background(), ev, func(context.Context, engine.Message) error { return nil }, nil, nil)
	if resp.BatchItemFailures == nil || len(resp.BatchItemFailures) != 0 {
		t.Errorf("failures = %#v, want an empty list", resp.BatchItemFailures)
	}
}

func TestHandleBatchAfterDeadlineReturnsTheRest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	ev := events.SQSEvent{Records: []events.SQSMessage{
		record("first", body(engine.ActionDispatch, "A"), 1),
		record("second", body(engine.ActionPoll, "B"), 1),
		record("third", body(engine.ActionPoll, "C"), 1),
	}}
	calls := 0
	handle := func(context.Context, engine.Message) error {
		calls++
		cancel() // the function runs out of time while handling the first record
		return nil
	}
	resp := HandleBatch(ctx, ev, handle, nil, nil)
	if calls != 1 {
		t.Errorf("handler called %d times, want 1", calls)
	}
	if got, want := failedIDs(resp), []string{"second", "third"}; !slices.Equal(got, want) {
		t.Errorf("failures = %v, want %v", got, want)
	}
}

func TestExcerptBoundsLoggedBodies(t *testing.T) {
	t.Parallel()
	long := string(make([]byte, 10*bodyLogLimit))
	if got := excerpt(long); len(got) > bodyLogLimit+len("…") {
		t.Errorf("excerpt of %d bytes is %d bytes", len(long), len(got))
	}
	if got := excerpt("short"); got != "short" {
		t.Errorf("excerpt(short) = %q", got)
	}
}

// visibility records ChangeMessageVisibility calls.
type visibility struct {
	mu    sync.Mutex
	calls map[string]int32
}

func (v *visibility) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if aws.ToString(in.QueueUrl) != "https://queue" {
		return nil, fmt.Errorf("queue %s", aws.ToString(in.QueueUrl))
	}
	v.calls[aws.ToString(in.ReceiptHandle)] = in.VisibilityTimeout
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

// TestHandleBatchBringsRetriesForward checks that a message whose handling failed is made
// visible again after the backoff for its receive count, while a malformed one, which no retry
// can help, is left to the queue's visibility timeout and its redrive policy.
func TestHandleBatchBringsRetriesForward(t *testing.T) {
	t.Parallel()
	withHandle := func(id, b string, n int) events.SQSMessage {
		r := record(id, b, n)
		r.ReceiptHandle = "rh-" + id
		return r
	}
	ev := events.SQSEvent{Records: []events.SQSMessage{
		withHandle("first-failure", body(engine.ActionPoll, "T-fail"), 1),
		withHandle("third-failure", body(engine.ActionPoll, "T-fail"), 3),
		withHandle("ok", body(engine.ActionPoll, "T-ok"), 1),
		withHandle("malformed", `{"v":1}`, 1),
	}}
	v := &visibility{calls: map[string]int32{}}
	resp := HandleBatch(context.Background(), ev, func(_ context.Context, m engine.Message) error {
		if m.TaskID == "T-fail" {
			return errors.New("throttled")
		}
		return nil
	}, nil, &Retry{API: v, QueueURL: "https://queue"})
	if got := failedIDs(resp); !slices.Equal(got, []string{"first-failure", "third-failure", "malformed"}) {
		t.Errorf("failures = %v", got)
	}
	if want := map[string]int32{"rh-first-failure": 10, "rh-third-failure": 40}; fmt.Sprint(v.calls) != fmt.Sprint(want) {
		t.Errorf("visibility changes = %v, want %v", v.calls, want)
	}
	for n, want := range map[int]int{1: 10, 2: 20, 4: 80, 6: 300, 50: 300} {
		if got := DefaultBackoff(n); got.Seconds() != float64(want) {
			t.Errorf("DefaultBackoff(%d) = %v, want %ds", n, got, want)
		}
	}
}
