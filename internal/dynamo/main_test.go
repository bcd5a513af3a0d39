package dynamo

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/fleetrun/fleetrun/internal/awsretry"
	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// serialClient sends one request at a time. DynamoDB runs each request atomically; moto does
// not (a TransactWriteItems checks, writes and on failure restores a copy of the whole table,
// while other threads write to it), so the tests serialize the requests to one table as
// DynamoDB would. The store's own read-plan-write races stay: they span several requests.
type serialClient struct {
	mu   *sync.Mutex
	next aws.HTTPClient
}

func (c serialClient) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next.Do(req)
}

// testTable is a fresh table on moto with a client for it.
type testTable struct {
	name   string
	client *dynamodb.Client
	count  *awstest.Counter
	faults *faults
}

var tableSeq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// newTable creates a table of its own for a test, with a client that counts its requests and
// can be told to fail some, and deletes the table when the test ends.
func newTable(t *testing.T) *testTable {
	t.Helper()
	cfg := awstest.Config(t)
	name := fmt.Sprintf("fleetrun-%d-%s", tableSeq.Add(1), unsafeName.ReplaceAllString(t.Name(), "-"))
	name = name[:min(len(name), 200)]
	tt := &testTable{name: name, count: new(awstest.Counter), faults: new(faults)}
	tt.client = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.HTTPClient = serialClient{mu: new(sync.Mutex), next: awsretry.HTTPClient()}
		o.APIOptions = append(o.APIOptions, tt.count.Register, tt.faults.register)
	})
	ctx := context.Background()
	if err := EnsureTable(ctx, tt.client, name); err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
	t.Cleanup(func() {
		_, _ = tt.client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	tt.count.Reset()
	return tt
}

// store returns a store on the table with quick backoff, reading time from now.
func (tt *testTable) store(now func() time.Time) *Store {
	return New(tt.client, tt.name, Options{Now: now, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
}

// fault intercepts the next n calls of an operation: it fails them with err instead of sending
// them, or runs before (with the call's input) so a test can inspect or race the call, and
// after (with the call's output) so a test can change what DynamoDB answered.
type fault struct {
	op string
	n  int
	// every spreads the n calls out: only one call of op in every "every" is intercepted.
	every  int
	seen   int
	err    func() error
	before func(ctx context.Context, params any)
	after  func(result any)
}

// faults injects failures into a client's calls. An injected error takes the place of one
// attempt inside the SDK's retry loop, as DynamoDB's own answer would, so the retryer
// production uses (awsretry) sees it first and the store sees what the retryer gives up on.
// The before and after hooks run once per call, outside the retries.
type faults struct {
	mu    sync.Mutex
	rules []*fault
	hits  map[string]int
}

func (f *faults) add(r *fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, r)
}

// take returns the rule that applies to the next call of op, if any, and uses it up by one:
// a rule with an error when failing is true, a rule with hooks otherwise.
func (f *faults) take(op string, failing bool) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.op != op || r.n <= 0 || (r.err != nil) != failing {
			continue
		}
		r.seen++
		if r.every <= 1 || r.seen%r.every == 0 {
			r.n--
			if f.hits == nil {
				f.hits = map[string]int{}
			}
			f.hits[op]++
			return r
		}
	}
	return nil
}

// hit returns how many calls of op the faults have intercepted.
func (f *faults) hit(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[op]
}

func (f *faults) register(stack *middleware.Stack) error {
	err := stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("test.faults.errors",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if r := f.take(middleware.GetOperationName(ctx), true); r != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, r.err()
			}
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
	if err != nil {
		return err
	}
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.faults.hooks",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			r := f.take(middleware.GetOperationName(ctx), false)
			if r == nil {
				return next.HandleInitialize(ctx, in)
			}
			if r.before != nil {
				r.before(ctx, in.Parameters)
			}
			out, md, err := next.HandleInitialize(ctx, in)
			if err == nil && r.after != nil {
				r.after(out.Result)
			}
			return out, md, err
		}), middleware.Before)
}

// newClock is the clock of a store test, with nanoseconds so that rounding is caught.
func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2031, 5, 6, 7, 8, 9, 987654321, time.UTC))
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}
