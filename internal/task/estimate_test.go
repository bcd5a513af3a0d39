package task_test

import (
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestEstimatedCompletion(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 5, 6, 7, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := start.Add(d); return &v }
	tests := []struct {
		name    string
		status  task.Status
		counts  task.Counts
		updated time.Duration
		timeout int
		want    *time.Time
	}{
		{"nothing finished yet", task.StatusRunning, task.Counts{Total: 10, Running: 10}, time.Minute, 3600, nil},
		{"a quarter done after 5 minutes", task.StatusRunning, task.Counts{Total: 8, Running: 6, Succeeded: 1, Failed: 1},
			5 * time.Minute, 3600, at(20 * time.Minute)},
		{"undeliverable devices count as finished", task.StatusRunning, task.Counts{Total: 4, Running: 2, Undeliverable: 2},
			time.Minute, 3600, at(2 * time.Minute)},
		{"never past the deadline", task.StatusRunning, task.Counts{Total: 100, Running: 99, Succeeded: 1},
			time.Minute, 1800, at(30 * time.Minute)},
		{"pending", task.StatusPending, task.Counts{Total: 3, Pending: 3}, 0, 3600, nil},
		{"cancelling", task.StatusCancelling, task.Counts{Total: 2, Running: 1, Cancelled: 1}, time.Minute, 3600, nil},
		{"finished", task.StatusCompleted, task.Counts{Total: 2, Succeeded: 2}, time.Minute, 3600, nil},
	}
	for _, tt := range tests {
		tk := &task.Task{Status: tt.status, Counts: tt.counts, UpdatedAt: start.Add(tt.updated),
			Request: task.Request{TimeoutSeconds: tt.timeout}}
		if tt.status != task.StatusPending {
			tk.StartedAt = at(0)
		}
		got := tk.EstimatedCompletion()
		switch {
		case tt.want == nil && got != nil:
			t.Errorf("%s: estimate %v, want none", tt.name, got)
		case tt.want != nil && (got == nil || !got.Equal(*tt.want)):
			t.Errorf("%s: estimate %v, want %v", tt.name, got, tt.want)
		}
	}
}
