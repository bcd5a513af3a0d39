package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// sameTask fails the test when got and want differ in any field. Times are compared as
// instants and nil slices equal empty ones.
func sameTask(t *testing.T, what string, got, want *task.Task) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
		return
	}
	if diff := fieldDiff(normTask(*got), normTask(*want)); diff != "" {
		t.Errorf("%s: task %s differs:\n%s", what, want.ID, diff)
	}
}

// sameDevice fails the test when got and want differ in any field.
func sameDevice(t *testing.T, what string, got, want *task.Device) {
	t.Helper()
	if diff := fieldDiff(normDevice(*got), normDevice(*want)); diff != "" {
		t.Errorf("%s: device %s differs:\n%s", what, want.ID, diff)
	}
}

func normTask(x task.Task) task.Task {
	x.CreatedAt = x.CreatedAt.UTC()
	x.UpdatedAt = x.UpdatedAt.UTC()
	x.ExpiresAt = x.ExpiresAt.UTC()
	x.StartedAt = normTime(x.StartedAt)
	x.CompletedAt = normTime(x.CompletedAt)
	x.Request.DeviceIDs = orEmpty(x.Request.DeviceIDs)
	x.Request.Args = orEmpty(x.Request.Args)
	if x.Result != nil {
		r := *x.Result
		r.SucceededDevices = orEmpty(r.SucceededDevices)
		r.FailedDevices = orEmpty(r.FailedDevices)
		r.CancelledDevices = orEmpty(r.CancelledDevices)
		x.Result = &r
	}
	return x
}

func normDevice(d task.Device) task.Device {
	d.StartedAt = normTime(d.StartedAt)
	d.CompletedAt = normTime(d.CompletedAt)
	d.CancelRequestedAt = normTime(d.CancelRequestedAt)
	return d
}

func normTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return new(t.UTC())
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// fieldDiff compares two values field by field through their JSON form and describes the
// fields that differ, each cut short so that a list of 10,000 devices stays readable.
func fieldDiff(got, want any) string {
	g, w := fields(got), fields(want)
	keys := make([]string, 0, len(g)+len(w))
	for k := range g {
		keys = append(keys, k)
	}
	for k := range w {
		if _, ok := g[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if string(g[k]) != string(w[k]) {
			fmt.Fprintf(&b, "  %s: got %s\n  %s want %s\n", k, cut(g[k]), strings.Repeat(" ", len(k)), cut(w[k]))
		}
	}
	return b.String()
}

func fields(v any) map[string]json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

func cut(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// taskIDs returns the ids of tasks, in order.
func taskIDs(tasks []*task.Task) []string {
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.ID
	}
	return ids
}

// countsConsistent reports whether every device is counted in exactly one status.
func countsConsistent(c task.Counts) bool {
	sum := 0
	for _, s := range task.DeviceStatuses() {
		if c.Of(s) < 0 {
			return false
		}
		sum += c.Of(s)
	}
	return sum == c.Total
}
