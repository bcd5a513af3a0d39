package localstore

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// TestOutbox walks the outbox through what the delivery loop does with it: jobs are added
// once, come out due in time order, are rescheduled and removed, and outlast a reopen of the
// file.
func TestOutbox(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "fleetrun.db")
	s := open(t, path, nil)
	job := func(id string, due time.Duration) task.WebhookJob {
		return task.WebhookJob{ID: id, Type: task.WebhookTaskFinished, TaskID: "t1", URL: "https://hooks.example.com/",
			At: base, Payload: []byte(`{"id":"` + id + `"}`), NextAt: base.Add(due)}
	}
	for _, j := range []task.WebhookJob{job("late", 3*time.Second), job("soon", time.Second), job("now", 0)} {
		if added, err := s.AddWebhook(ctx, j); err != nil || !added {
			t.Fatalf("AddWebhook(%s) = %v, %v", j.ID, added, err)
		}
	}
	// The same event again leaves the job as it is.
	again := job("soon", 0)
	again.Attempt = 7
	if added, err := s.AddWebhook(ctx, again); err != nil || added {
		t.Fatalf("AddWebhook of a job already there = %v, %v; want false", added, err)
	}

	ids := func(jobs []task.WebhookJob) []string {
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	due, next, err := s.DueWebhooks(ctx, base.Add(time.Second), 10)
	if err != nil || !slices.Equal(ids(due), []string{"now", "soon"}) || !next.Equal(base.Add(3*time.Second)) {
		t.Fatalf("DueWebhooks = %v, next %v, %v; want now and soon, next at +3s", ids(due), next, err)
	}
	if due[1].Attempt != 0 || string(due[1].Payload) != `{"id":"soon"}` {
		t.Errorf("the job was changed by the second AddWebhook: %+v", due[1])
	}
	if due, next, _ := s.DueWebhooks(ctx, base.Add(time.Hour), 1); !slices.Equal(ids(due), []string{"now"}) || !next.Equal(base.Add(time.Second)) {
		t.Errorf("DueWebhooks with n=1 = %v, next %v; want now, then soon's time", ids(due), next)
	}

	// Rescheduled after a failed attempt, the job moves behind the others.
	retry := due[0]
	retry.Attempt, retry.FirstAttemptAt, retry.NextAt = 1, base, base.Add(5*time.Second)
	if err := s.UpdateWebhook(ctx, retry); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveWebhook(ctx, "soon"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveWebhook(ctx, "soon"); err != nil {
		t.Errorf("removing a job twice = %v", err)
	}
	if err := s.UpdateWebhook(ctx, job("soon", 0)); err != nil {
		t.Errorf("UpdateWebhook of a removed job = %v", err)
	}
	s.Close()

	s = open(t, path, nil)
	due, next, err = s.DueWebhooks(ctx, base.Add(time.Hour), 10)
	if err != nil || !slices.Equal(ids(due), []string{"late", "now"}) || !next.IsZero() {
		t.Fatalf("after a reopen, DueWebhooks = %v, next %v, %v; want late then now, and nothing after", ids(due), next, err)
	}
	if due[1].Attempt != 1 || !due[1].NextAt.Equal(base.Add(5*time.Second)) || !due[1].FirstAttemptAt.Equal(base) {
		t.Errorf("the rescheduled job reads back as %+v", due[1])
	}
	if early, _, _ := s.DueWebhooks(ctx, base.Add(2*time.Second), 10); len(early) != 0 {
		t.Errorf("jobs due later came out early: %v", ids(early))
	}
}
