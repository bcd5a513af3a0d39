package awsapp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// missing stands in for the adapter of a service a function did not name: the readers
// (StatusFunction, OutputFunction, InventoryFunction) send no message, runs no command and publishes nothing. If a request ever does, it fails
// with an error that names the service, instead of panicking on a nil. As a runner it is a
// polled one, so that the engine paces Retry-After by the executor's polls as it does where
// SSM is wired.
type missing struct{ what string }

var (
	_ engine.Queue     = missing{}
	_ engine.Publisher = missing{}
	_ Runner           = missing{}
)

func (m missing) err() error {
	return fmt.Errorf("awsapp: this function does not wire the %s", m.what)
}

// Send implements engine.Queue.
func (m missing) Send(context.Context, engine.Message, time.Duration) error { return m.err() }

// Publish implements engine.Publisher.
func (m missing) Publish(context.Context, task.Notification) error { return m.err() }

// Start implements engine.Runner.
func (m missing) Start(context.Context, *task.Task) error { return m.err() }

// Cancel implements engine.Runner.
func (m missing) Cancel(context.Context, *task.Task) error { return m.err() }

// StopDevices implements engine.Runner.
func (m missing) StopDevices(context.Context, *task.Task, []string) error { return m.err() }

// Poll implements engine.PolledRunner.
func (m missing) Poll(context.Context, *task.Task) ([]task.DeviceUpdate, error) { return nil, m.err() }

// Invocations implements Runner.
func (m missing) Invocations(context.Context, string, []string) (map[string]task.DeviceUpdate, error) {
	return nil, m.err()
}

// secretOnce is WebhookFunction's signer: it reads the signing secret with read on the first
// delivery rather than at the cold start, which then makes no AWS call, and keeps it for the
// life of the instance, so that a rotated secret reaches the function with its next
// instances. A failed read is tried again on the next delivery.
type secretOnce struct {
	read   func(context.Context) (webhook.Secret, error)
	policy webhook.Policy
	mu     sync.Mutex
	sender *webhook.Sender
}

var _ engine.WebhookSender = (*secretOnce)(nil)

// load reads the secret unless it has been read.
func (s *secretOnce) load(ctx context.Context) error {
	if s.read == nil {
		return nil // the engine has no sender: DeliverWebhook says so itself
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sender != nil {
		return nil
	}
	secret, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.sender = webhook.NewSender(webhook.SenderConfig{Secret: secret, Policy: s.policy})
	return nil
}

// Send implements engine.WebhookSender, once the secret is read.
func (s *secretOnce) Send(ctx context.Context, job task.WebhookJob, payload []byte) task.AttemptResult {
	if err := s.load(ctx); err != nil {
		return task.AttemptResult{Err: "the webhook signing secret could not be read: " + err.Error()}
	}
	s.mu.Lock()
	sender := s.sender
	s.mu.Unlock()
	return sender.Send(ctx, job, payload)
}
