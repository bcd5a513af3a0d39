package awstest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Counter counts the requests an SDK client sends, per service and operation. Every attempt
// is counted, retries included, because each is a request AWS bills and throttles. Add it to
// a client with its Register method:
//
//	var c awstest.Counter
//	client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
//		o.APIOptions = append(o.APIOptions, c.Register)
//	})
//
// The zero value is ready to use and safe for concurrent use.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// Register adds the counting middleware to an operation's stack. Its signature is that of an
// element of aws.Config.APIOptions and of every service client's Options.APIOptions.
func (c *Counter) Register(stack *middleware.Stack) error {
	// After the retry middleware, so that each attempt passes through it once.
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("awstest.Counter",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			c.add(awsmiddleware.GetServiceID(ctx) + "." + awsmiddleware.GetOperationName(ctx))
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

func (c *Counter) add(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[op]++
}

// Count returns how many requests of operation op ("GetItem") were sent, whatever the service.
func (c *Counter) Count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for k, v := range c.n {
		if strings.HasSuffix(k, "."+op) {
			total += v
		}
	}
	return total
}

// Total returns how many requests were sent.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for _, v := range c.n {
		total += v
	}
	return total
}

// Snapshot returns the counts by "Service.Operation".
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// Reset forgets every count.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = nil
}

// String lists the counts, sorted by operation, for logs.
func (c *Counter) String() string {
	snap := c.Snapshot()
	parts := make([]string, 0, len(snap))
	for _, k := range slices.Sorted(maps.Keys(snap)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, snap[k]))
	}
	return strings.Join(parts, " ")
}
