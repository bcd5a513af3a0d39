package watch_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/watch"
)

func TestBrokerWakesWaitersOnANewerVersion(t *testing.T) {
	t.Parallel()
	b := watch.NewBroker()
	woke := make(chan error, 1)
	go func() { woke <- b.Wait(context.Background(), "t1", 3) }()

	// A write to another task, or an older version of this one, wakes nobody.
	b.Notify(&task.Task{ID: "t2", Version: 9})
	b.Notify(&task.Task{ID: "t1", Version: 3})
	select {
	case err := <-woke:
		t.Fatalf("Wait returned (%v) without a newer version", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Notify(&task.Task{ID: "t1", Version: 4})
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a newer version was notified")
	}
}

func TestBrokerDoesNotMissAWriteBeforeWait(t *testing.T) {
	t.Parallel()
	b := watch.NewBroker()
	// The waiter read version 1; the write of version 2 lands before it calls Wait.
	b.Notify(&task.Task{ID: "t1", Version: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Wait(ctx, "t1", 1); err != nil {
		t.Fatalf("Wait = %v, want an immediate return", err)
	}
}

func TestBrokerWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := watch.NewBroker().Wait(ctx, "t1", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want the context's deadline", err)
	}
}

func TestPollerReturnsWhenTheStoredVersionRises(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(filepath.Join(t.TempDir(), "db"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now().UTC()
	tk := &task.Task{ID: "01JDWATCHPOLLER00000000000", Owner: "o", Status: task.StatusPending, Version: 1,
		CreatedAt: now, UpdatedAt: now, Request: task.Request{DeviceIDs: []string{"a"}, ScriptURL: "x"},
		Counts: task.Counts{Total: 1, Pending: 1}}
	if _, _, err := store.CreateTask(context.Background(), tk, nil); err != nil {
		t.Fatal(err)
	}
	p := watch.Poller{Store: store, Interval: 5 * time.Millisecond}
	woke := make(chan error, 1)
	go func() { woke <- p.Wait(context.Background(), tk.ID, 1) }()
	tr, err := task.Dispatch(tk, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Transition(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the poller did not see the new version")
	}
	if err := p.Wait(context.Background(), "01JDNOSUCHTASK000000000000", 1); !task.IsCode(err, task.CodeNotFound) {
		t.Fatalf("Wait on a missing task = %v, want CodeNotFound", err)
	}
}

func TestBrokerWakesOwnerWaitersOnAnyOfTheirTasks(t *testing.T) {
	t.Parallel()
	b := watch.NewBroker()
	mark := b.OwnerMark("alice")
	woke := make(chan error, 1)
	go func() { woke <- b.WaitOwner(context.Background(), "alice", mark) }()

	// A write to another owner's task wakes nobody.
	b.Notify(&task.Task{ID: "t2", Owner: "bob", Version: 1})
	select {
	case err := <-woke:
		t.Fatalf("WaitOwner returned (%v) after a write to another owner's task", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Notify(&task.Task{ID: "t1", Owner: "alice", Version: 1})
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitOwner did not return after a write to the owner's task")
	}
}

func TestBrokerOwnerWaitDoesNotMissAWriteAfterTheMark(t *testing.T) {
	t.Parallel()
	b := watch.NewBroker()
	mark := b.OwnerMark("alice")
	// The write lands between the caller's read of the list and its call to WaitOwner.
	b.Notify(&task.Task{ID: "t1", Owner: "alice", Version: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitOwner(ctx, "alice", mark); err != nil {
		t.Fatalf("WaitOwner = %v, want an immediate return", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := b.WaitOwner(ctx2, "alice", b.OwnerMark("alice")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitOwner from the current mark = %v, want the context's deadline", err)
	}
}
