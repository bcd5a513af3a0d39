package engine_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// gatedPublisher holds the first Publish until the gate opens, as a slow network call would,
// so that other handlers of the task run while it is under way.
type gatedPublisher struct {
	publisher
	started chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (p *gatedPublisher) Publish(ctx context.Context, n task.Notification) error {
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.started)
		<-p.gate
	}
	return p.publisher.Publish(ctx, n)
}

func TestConcurrentCancelsPublishTheTerminalNotificationOnce(t *testing.T) {
	t.Parallel()
	store, clock := openStore(t)
	pub := &gatedPublisher{started: make(chan struct{}), gate: make(chan struct{})}
	q := &queue{}
	reads := &countingStore{Store: store}
	eng := engine.New(engine.Config{Store: reads, Queue: q, Runner: &fakeRunner{}, Publisher: pub,
		Rules: task.Rules{DeviceID: task.LocalDeviceID}, Now: clock.Now})
	ctx := context.Background()
	tk, _, err := eng.Submit(ctx, engine.Submission{Owner: "alice", Draft: task.Draft{DeviceIDs: []string{"a"}, ScriptURL: "x.sh"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Handle(ctx, engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: tk.ID}); err != nil {
		t.Fatal(err)
	}
	// Several DELETEs while the task is cancelling: each queues a cancel message.
	for range 8 {
		if _, err := eng.Cancel(ctx, task.Caller{Owner: "alice"}, tk.ID); err != nil {
			t.Fatal(err)
		}
	}
	q.take()
	// The device's report ends the task; its notification is on its way when the cancel
	// messages, and more DELETEs, arrive for the finished task.
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := eng.Report(ctx, tk.ID, []task.DeviceUpdate{{DeviceID: "a", Status: task.DeviceCancelled, At: clock.Now()}}); err != nil {
			t.Error(err)
		}
	})
	<-pub.started
	before := reads.gets.Load()
	for range 8 {
		wg.Go(func() {
			m := engine.Message{Version: engine.MessageVersion, Action: engine.ActionCancel, TaskID: tk.ID}
			if err := eng.Handle(ctx, m); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := eng.Cancel(ctx, task.Caller{Owner: "alice"}, tk.ID); err != nil {
				t.Error(err)
			}
		})
	}
	// Every handler and cancel has read the finished, not yet published, task.
	clocktest.Eventually(t, 10*time.Second, func() error {
		if n := reads.gets.Load() - before; n < 16 {
			return fmt.Errorf("%d of 16 reads", n)
		}
		return nil
	})
	close(pub.gate)
	wg.Wait()
	if n := pub.all(); len(n) != 1 || n[0].Status != task.StatusCancelled {
		t.Fatalf("published %d notifications (%+v), want the cancelled one once", len(n), n)
	}
}

// countingStore counts the task reads of a store.
type countingStore struct {
	task.Store
	gets atomic.Int64
}

func (s *countingStore) GetTask(ctx context.Context, id string) (*task.Task, error) {
	s.gets.Add(1)
	return s.Store.GetTask(ctx, id)
}
