// Package storetest is the conformance suite of task.Store. Every store (the embedded one and
// DynamoDB) runs the same suite, so that the engine can rely on one behaviour whatever it is
// wired to.
//
// Beyond the doc comments of task.Store, the suite pins down what those leave open:
//
//   - Times round-trip to the nanosecond, and empty slices may come back as nil.
//   - ListTasks orders by CreatedAt, newest first, and breaks ties by id, descending.
//   - A device's StartedAt is the At of the update that made it running, and its CompletedAt the
//     At of the update that made it terminal. An update with an empty Ref keeps the Ref the
//     device already has.
//   - ApplyDeviceUpdates raises the version when it applies something (by one per call or by
//     one per applied update, but never by more than the number applied) and never otherwise.
//   - An idempotency record past its ExpiresAt no longer matches, and the next create with its
//     key replaces it.
//   - Transition stamps UpdatedAt, StartedAt and CompletedAt with the transition's At, and a
//     device update's At likewise stamps the device.
//   - Listings may end with an empty page (a store that cannot tell that nothing follows), but
//     otherwise pages are full. A malformed cursor is a CodeInvalidQuery error (task.BadCursor).
//
// The suite never assumes that the store is empty: task ids and owners are unique to each run,
// so a store may share one table between calls of open.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// OpenFunc returns a store for a group of tests; it registers its own cleanup with t. The store
// reads time from now, which the suite controls so that it can test expiry without waiting.
// The store may hold data of earlier calls, or share a table with the other groups: each group
// uses ids and owners of its own, and the expiry tests count what DeleteExpired removes in a
// window of time that no other group writes into.
type OpenFunc func(t *testing.T, now func() time.Time) task.Store

// Run runs the whole conformance suite against the stores that open returns. It calls open once
// for each group of tests (create, get, list, transition, devices, concurrency, expiry, publishing, deliveries); the
// groups run in parallel and the tests within a group one after another.
func Run(t *testing.T, open func(t *testing.T, now func() time.Time) task.Store) {
	groups := []struct {
		name string
		run  func(e *env)
	}{
		{"CreateTask", testCreateTask},
		{"GetTask", testGetTask},
		{"ListTasks", testListTasks},
		{"Relaunches", testRelaunches},
		{"Transition", testTransition},
		{"ApplyDeviceUpdates", testApplyDeviceUpdates},
		{"ListDevices", testListDevices},
		{"Concurrency", testConcurrency},
		{"DeviceCancel", testDeviceCancel},
		{"DeviceCancelConcurrency", testDeviceCancelConcurrency},
		{"DeleteExpired", testDeleteExpired},
		{"MarkPublished", testMarkPublished},
		{"UnstartedDevices", testUnstartedDevices},
		{"Deliveries", testDeliveries},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(newEnv(t, open))
		})
	}
}

// epoch is where every group's clock starts. It has nanoseconds so that a store that rounds
// times is caught.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

// runID makes ids unique across runs of the suite against a shared table.
var runID = func() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

var seq atomic.Int64

// env is what a group of tests works with.
type env struct {
	t     *testing.T
	ctx   context.Context
	store task.Store
	clock *clocktest.Clock
}

func newEnv(t *testing.T, open OpenFunc) *env {
	clock := clocktest.New(epoch)
	return &env{t: t, ctx: t.Context(), store: open(t, clock.Now), clock: clock}
}

// run runs f as a subtest of the group, with an env bound to the subtest.
func (e *env) run(name string, f func(e *env)) {
	e.t.Run(name, func(t *testing.T) {
		c := *e
		c.t, c.ctx = t, t.Context()
		f(&c)
	})
}

// id returns an id unique to this run, readable in failure messages.
func (e *env) id(name string) string {
	return fmt.Sprintf("%s-%s-%d", name, runID, seq.Add(1))
}

// newTask builds a pending task the way the engine's Submit does, created at the clock's time.
func (e *env) newTask(owner string, deviceIDs []string) *task.Task {
	now := e.clock.Now()
	return &task.Task{
		ID:          e.id("task"),
		Owner:       owner,
		Status:      task.StatusPending,
		Version:     1,
		CreatedAt:   now,
		UpdatedAt:   now,
		CurrentStep: "queued",
		Request: task.Request{
			DeviceIDs:              deviceIDs,
			ScriptURL:              "s3://scripts/patch.sh",
			Args:                   []string{"--dry-run", "two words"},
			TimeoutSeconds:         600,
			DeliveryTimeoutSeconds: 120,
			MaxConcurrency:         "10%",
			MaxErrors:              "1",
		},
		Counts: task.Counts{Total: len(deviceIDs), Pending: len(deviceIDs)},
	}
}

// create stores tk, failing the test on any error or when nothing new was created.
func (e *env) create(tk *task.Task) *task.Task {
	e.t.Helper()
	stored, created, err := e.store.CreateTask(e.ctx, tk, nil)
	if err != nil || !created {
		e.t.Fatalf("CreateTask(%s) = created %v, %v", tk.ID, created, err)
	}
	return stored
}

// get reads a task, failing the test on any error.
func (e *env) get(id string) *task.Task {
	e.t.Helper()
	tk, err := e.store.GetTask(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetTask(%s) = %v", id, err)
	}
	return tk
}

// Move builds the transition of tk to status to at time at with the constructors of package
// task, choosing the first event of task.Events that leads there: tests name the status they
// want, not the event. A transition that ends the task gets an empty result and expires at
// expiresAt. It fails when no event leads from tk's status to to.
func Move(tk *task.Task, to task.Status, at, expiresAt time.Time) (task.Transition, error) {
	for _, ev := range task.Events() {
		if next, err := tk.Status.Next(ev); err != nil || next != to {
			continue
		}
		if to.Terminal() && !tk.Status.Terminal() {
			return task.End(tk, ev, at, &task.Result{SucceededDevices: []string{}, FailedDevices: []string{},
				CancelledDevices: []string{}, Reason: "test"}, expiresAt)
		}
		switch ev {
		case task.EventDispatch:
			return task.Dispatch(tk, at)
		case task.EventCancel:
			return task.Cancel(tk, at)
		}
	}
	return task.Transition{}, fmt.Errorf("storetest: no event moves a %s task to %s", tk.Status, to)
}

// MoveTo writes the transition of tk to status to (see Move) in store, failing the test on
// any error, and returns the task as written.
func MoveTo(t *testing.T, store task.Store, tk *task.Task, to task.Status, at, expiresAt time.Time) *task.Task {
	t.Helper()
	tr, err := Move(tk, to, at, expiresAt)
	if err != nil {
		t.Fatal(err)
	}
	moved, err := store.Transition(t.Context(), tr)
	if err != nil {
		t.Fatalf("Transition(%s %s→%s) = %v", tk.ID, tk.Status, to, err)
	}
	return moved
}

// move makes a transition of tk to status to at the clock's time, failing the test on error.
// A terminal status is given a result and an expiry of expiresIn from now.
func (e *env) move(tk *task.Task, to task.Status, expiresIn time.Duration) *task.Task {
	e.t.Helper()
	tr, err := Move(tk, to, e.clock.Now(), e.clock.Now().Add(expiresIn))
	if err != nil {
		e.t.Fatal(err)
	}
	tr.Step = "step " + string(to)
	moved, err := e.store.Transition(e.ctx, tr)
	if err != nil {
		e.t.Fatalf("Transition(%s %s→%s) = %v", tk.ID, tk.Status, to, err)
	}
	return moved
}

// apply applies updates to a task, failing the test on error.
func (e *env) apply(taskID string, updates ...task.DeviceUpdate) (*task.Task, int) {
	e.t.Helper()
	tk, n, err := e.store.ApplyDeviceUpdates(e.ctx, taskID, updates)
	if err != nil {
		e.t.Fatalf("ApplyDeviceUpdates(%s) = %v", taskID, err)
	}
	return tk, n
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, err error, code task.Code, what string) {
	t.Helper()
	if !task.IsCode(err, code) {
		t.Errorf("%s: err = %v (code %q), want code %q", what, err, task.ErrorCode(err), code)
	}
}

// deviceNames returns n device ids that do not sort in the order given, so that a store
// returning them sorted instead of in request order is caught.
func deviceNames(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%05d", (i*7919)%100000)
	}
	return ids
}
