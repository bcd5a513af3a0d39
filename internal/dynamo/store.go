package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/task"
)

// API is the part of the DynamoDB client the store calls. *dynamodb.Client satisfies it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Options tune a Store. The zero value is usable.
type Options struct {
	// Now is the clock; time.Now when nil. Expiry and timestamps the store writes use it.
	Now func() time.Time
	// Logger receives re-plans and best-effort failures; they are discarded when nil.
	Logger *slog.Logger
	// MaxAttempts bounds the rounds of device-update transactions that lose races to other
	// writers, four rounds per attempt, before the updates left are reported unavailable
	// (8 when zero). Throttling is the SDK's retryer's to handle (awsretry), inside each call.
	MaxAttempts int
	// BaseDelay is the first backoff before a transaction cancelled for contention is tried
	// again (25 ms when zero); it doubles, with full jitter, up to MaxDelay (2 s when zero).
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Retention is how long finished tasks are kept (the engine's retention). When set, device
	// items are written with a TTL that outlasts their task — its deadline plus Retention and a
	// day — so finishing a task need not rewrite every device to give it the task's expiry.
	Retention time.Duration
}

// Store is task.Store on one DynamoDB table; the package documentation describes the schema.
// It is safe for concurrent use.
type Store struct {
	db          API
	table       string
	now         func() time.Time
	log         *slog.Logger
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	retention   time.Duration
}

var _ task.Store = (*Store)(nil)

// New returns a store on table, which must have the schema of CreateTableInput.
func New(client API, table string, opts Options) *Store {
	s := &Store{db: client, table: table, now: opts.Now, log: opts.Logger,
		maxAttempts: opts.MaxAttempts, baseDelay: opts.BaseDelay, maxDelay: opts.MaxDelay, retention: opts.Retention}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = 8
	}
	if s.baseDelay <= 0 {
		s.baseDelay = 25 * time.Millisecond
	}
	if s.maxDelay <= 0 {
		s.maxDelay = 2 * time.Second
	}
	return s
}

// Table returns the name of the store's table.
func (s *Store) Table() string { return s.table }

// clock returns the store's current time in UTC.
func (s *Store) clock() time.Time { return s.now().UTC() }

// throttled reports whether err means DynamoDB is shedding load, so the call may succeed later.
func throttled(err error) bool {
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		return true
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "ProvisionedThroughputExceededException", "ThrottlingException", "Throttling",
		"RequestLimitExceeded", "LimitExceededException", "InternalServerError", "ServiceUnavailable",
		"TransactionInProgressException":
		return true
	}
	return false
}

// call runs fn, one call of the SDK. The SDK's retryer has already tried a throttled call
// again within its limits (awsretry); a call still throttled is returned as a CodeUnavailable
// error that wraps the last one, so that the caller is told to try again later. what names the
// call in logs; callers add their own context to the error.
func (s *Store) call(ctx context.Context, what string, fn func(context.Context) error) error {
	err := fn(ctx)
	if err != nil && throttled(err) {
		s.log.DebugContext(ctx, "dynamodb still throttled after the SDK's retries", "call", what, "err", err)
		return fmt.Errorf("%w: %w", task.Errorf(task.CodeUnavailable, "the task store is overloaded; try again"), err)
	}
	return err
}

// backoff waits before round+1 of a contended transaction: exponential with full jitter,
// capped, cut short by ctx.
func (s *Store) backoff(ctx context.Context, attempt int) error {
	d := s.baseDelay << min(attempt, 16)
	if d <= 0 || d > s.maxDelay {
		d = s.maxDelay
	}
	d = time.Duration(rand.Int64N(int64(d)) + 1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func notFound(format string, args ...any) error {
	return task.Errorf(task.CodeNotFound, format, args...)
}
