package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/engine"
)

// bodyLogLimit bounds how much of a malformed body is logged: enough to recognise it, not
// enough for one bad message to flood the log.
const bodyLogLimit = 512

// HandleBatch decodes each record of an SQS batch and passes it to handle (engine.Handle), one
// after the other, and returns the records to deliver again as batch item failures. The event
// source mapping must have ReportBatchItemFailures enabled, and the queue must be a standard
// queue (records are independent; nothing is held back behind a failure).
//
// What happens to a record follows SQS's redrive rules, so that nothing is retried forever in
// code and nothing is lost silently:
//
//   - Handled without error: not reported, so Lambda deletes it.
//   - handle returned an error: reported, so the message is delivered again; logged at Warn
//     with its receive count. With retry set, it becomes visible again after retry's backoff
//     instead of the queue's visibility timeout, so that a poll that failed for a moment
//     (throttling, an unreachable service) is tried again within seconds, not minutes.
//   - Malformed (Decode failed, or handle returned an error wrapping engine.ErrMalformed):
//     logged at Error and reported too. Retrying cannot help it, but reporting it is what leaves
//     it to the dead-letter queue: SQS moves it there once its receive count passes the redrive
//     policy's maxReceiveCount, where it can be inspected. Not reporting it would delete it.
//   - handle panicked: logged at Error and reported, so one bad record does not fail the others.
//   - ctx ended before the record was reached (the function is about to time out): reported
//     without being handled, so it comes back rather than being cut off half way.
func HandleBatch(ctx context.Context, ev events.SQSEvent, handle func(context.Context, engine.Message) error, log *slog.Logger, retry *Retry) events.SQSEventResponse {
	describe := func(m engine.Message) []any {
		return []any{"task_id", m.TaskID, "action", string(m.Action), "attempt", m.Attempt}
	}
	return handleBatch(ctx, ev, Decode, describe, handle, log, retry)
}

// handleBatch is HandleBatch for messages of any kind: decode reads a body, describe names a
// message in the log, handle acts on it.
func handleBatch[M any](ctx context.Context, ev events.SQSEvent, decode func(string) (M, error), describe func(M) []any,
	handle func(context.Context, M) error, log *slog.Logger, retry *Retry) events.SQSEventResponse {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for _, r := range ev.Records {
		if !handleRecord(ctx, r, decode, describe, handle, log, retry) {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp
}

// handleRecord handles one record and reports whether it may be deleted.
func handleRecord[M any](ctx context.Context, r events.SQSMessage, decode func(string) (M, error), describe func(M) []any,
	handle func(context.Context, M) error, log *slog.Logger, retry *Retry) bool {
	attrs := []any{"message_id", r.MessageId, "receive_count", receiveCount(r)}
	if err := ctx.Err(); err != nil {
		log.WarnContext(ctx, "message not handled before the deadline; it will be delivered again", append(attrs, "err", err)...)
		return false
	}
	m, err := decode(r.Body)
	if err != nil {
		log.ErrorContext(ctx, "malformed message left to the dead-letter queue", append(attrs, "body", excerpt(r.Body), "err", err)...)
		return false
	}
	attrs = append(attrs, describe(m)...)
	err = safeHandle(ctx, m, handle)
	switch {
	case err == nil:
		log.DebugContext(ctx, "message handled", attrs...)
		return true
	case errors.Is(err, engine.ErrMalformed):
		log.ErrorContext(ctx, "malformed message left to the dead-letter queue", append(attrs, "err", err)...)
	case errors.Is(err, errPanic):
		log.ErrorContext(ctx, "message handler panicked; it will be delivered again", append(attrs, "err", err)...)
	default:
		log.WarnContext(ctx, "message failed; it will be delivered again", append(attrs, "err", err)...)
		retry.soon(ctx, r, log)
	}
	return false
}

// VisibilityAPI is the part of the SQS client that Retry uses; *sqs.Client satisfies it.
type VisibilityAPI interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Retry makes a message that failed visible again after a backoff instead of the queue's
// visibility timeout (twelve minutes for the executor's queue).
type Retry struct {
	API      VisibilityAPI
	QueueURL string
	// Backoff is the wait before a message that has been delivered n times is delivered
	// again; DefaultBackoff when nil.
	Backoff func(n int) time.Duration
}

// DefaultBackoff waits 10 s after a first failure and twice as long after each further one, at
// most five minutes: 10, 20, 40 and 80 s before the queue's fifth delivery, after which SQS
// moves the message to the dead-letter queue and the sweep re-drives its task.
func DefaultBackoff(n int) time.Duration {
	return min(10*time.Second<<min(max(n-1, 0), 10), 5*time.Minute)
}

// soon shortens r's wait for its next delivery. A failure to do so only leaves it to the
// visibility timeout, so it is logged and nothing more.
func (rt *Retry) soon(ctx context.Context, r events.SQSMessage, log *slog.Logger) {
	if rt == nil || rt.API == nil || r.ReceiptHandle == "" {
		return
	}
	backoff := rt.Backoff
	if backoff == nil {
		backoff = DefaultBackoff
	}
	wait := backoff(receiveCount(r))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, err := rt.API.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(rt.QueueURL),
		ReceiptHandle: aws.String(r.ReceiptHandle), VisibilityTimeout: int32(wait / time.Second)})
	if err != nil {
		log.WarnContext(ctx, "could not bring a failed message's next delivery forward", "message_id", r.MessageId, "err", err)
		return
	}
	log.DebugContext(ctx, "failed message delivered again after a backoff", "message_id", r.MessageId, "backoff", wait)
}

// errPanic marks an error recovered from a panicking handler.
var errPanic = errors.New("handler panicked")

// safeHandle calls handle, turning a panic into an error.
func safeHandle[M any](ctx context.Context, m M, handle func(context.Context, M) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqsqueue: handle a message: %w: %v", errPanic, p)
		}
	}()
	return handle(ctx, m)
}

// receiveCount is how many times SQS has delivered the record, this time included, or 0 when
// the attribute is missing.
func receiveCount(r events.SQSMessage) int {
	n, err := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
	if err != nil {
		return 0
	}
	return n
}

// excerpt cuts a body for the log.
func excerpt(body string) string {
	if len(body) <= bodyLogLimit {
		return strings.ToValidUTF8(body, "�")
	}
	return strings.ToValidUTF8(body[:bodyLogLimit], "�") + "…"
}
