package dynamo

import (
	"slices"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

var _ engine.Leases = (*Store)(nil)

// TestLeases checks the index of unfinished tasks the sweep reads: Due lists, longest overdue
// first, exactly the unfinished tasks whose lease has run out, in one Query and without a
// Scan; Renew moves a lease only from the one it was given, and never on a finished task; a
// task created before leases existed gets one through Renew from zero; and a task leaves the
// index when it finishes.
func TestLeases(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	now := clk.Now()
	create := func(id string, lease time.Time) *task.Task {
		t.Helper()
		tk := newTask(id, "owner", ids("d", 2), now)
		tk.Lease = lease
		stored, created, err := s.CreateTask(ctx, tk, nil)
		if err != nil || !created {
			t.Fatalf("CreateTask %s: %v", id, err)
		}
		if !stored.Lease.Equal(lease) {
			t.Fatalf("created %s with lease %v, want %v", id, stored.Lease, lease)
		}
		return stored
	}
	late := create("late", now.Add(-2*time.Minute))
	later := create("later", now.Add(-time.Minute))
	create("on-time", now.Add(time.Minute))
	create("no-lease", time.Time{})
	due := func(at time.Time) []string {
		t.Helper()
		tt.count.Reset()
		got, err := s.Due(ctx, at, 10)
		if err != nil {
			t.Fatalf("Due: %v", err)
		}
		if c := tt.count.Snapshot(); c["DynamoDB.Query"] != 1 || c["DynamoDB.Scan"] != 0 || tt.count.Total() != 1 {
			t.Errorf("Due made %v; want one Query", c)
		}
		return got
	}
	if got := due(now); !slices.Equal(got, []string{"late", "later"}) {
		t.Errorf("Due(now) = %v, want [late later]", got)
	}
	if got := due(now.Add(-3 * time.Minute)); len(got) != 0 {
		t.Errorf("Due before any lease ran out = %v", got)
	}

	// Renew from the lease the task has, not from another.
	next := now.Add(3 * time.Minute)
	if err := s.Renew(ctx, "late", now, next); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("Renew from a lease the task does not have = %v, want conflict", err)
	}
	if err := s.Renew(ctx, "late", late.Lease, next); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if got, _ := s.GetTask(ctx, "late"); !got.Lease.Equal(next) {
		t.Errorf("lease after Renew = %v, want %v", got.Lease, next)
	}
	if err := s.Renew(ctx, "late", late.Lease, next.Add(time.Minute)); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("a second Renew from the old lease = %v, want conflict", err)
	}
	if err := s.Renew(ctx, "missing", time.Time{}, next); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("Renew of a missing task = %v, want not found", err)
	}
	// A task without a lease gets one.
	if err := s.Renew(ctx, "no-lease", time.Time{}, now.Add(-time.Second)); err != nil {
		t.Fatalf("Renew of a task without a lease: %v", err)
	}
	if got := due(now); !slices.Equal(got, []string{"later", "no-lease"}) {
		t.Errorf("Due after renewals = %v, want [later no-lease]", got)
	}

	// A finished task leaves the index, and its lease can no longer move.
	tr, err := task.End(later, task.EventCancel, now, &task.Result{}, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if got := due(now); !slices.Equal(got, []string{"no-lease"}) {
		t.Errorf("Due after a task finished = %v, want [no-lease]", got)
	}
	if err := s.Renew(ctx, "later", later.Lease, next); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("Renew of a finished task = %v, want conflict", err)
	}
}
