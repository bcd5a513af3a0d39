package emf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/emf"
	"github.com/fleetrun/fleetrun/internal/metrics"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestRecorderWritesOneDirectivePerLine(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	r := emf.New(emf.Config{Out: &out, Namespace: "fleetrun/test", Now: func() time.Time { return at }})
	ctx := context.Background()
	r.TaskSubmitted(ctx)
	r.TaskDispatched(ctx, 1500*time.Millisecond)
	r.TaskFinished(ctx, task.StatusCompleted, 90*time.Second, task.Counts{Total: 5, Succeeded: 3, Failed: 1, Cancelled: 1})
	r.SSMThrottled(ctx, "SendCommand")

	want := []string{
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[[]],"Metrics":[{"Name":"fleetrun_tasks_submitted_total","Unit":"Count"}]}]},"fleetrun_tasks_submitted_total":1}`,
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[[]],"Metrics":[{"Name":"fleetrun_dispatch_latency_seconds","Unit":"Seconds"}]}]},"fleetrun_dispatch_latency_seconds":1.5}`,
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[["status"]],"Metrics":[{"Name":"fleetrun_task_duration_seconds","Unit":"Seconds"},{"Name":"fleetrun_tasks_finished_total","Unit":"Count"}]}]},"fleetrun_task_duration_seconds":90,"fleetrun_tasks_finished_total":1,"status":"completed"}`,
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[["status"]],"Metrics":[{"Name":"fleetrun_devices_finished_total","Unit":"Count"}]}]},"fleetrun_devices_finished_total":3,"status":"succeeded"}`,
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[["status"]],"Metrics":[{"Name":"fleetrun_devices_finished_total","Unit":"Count"}]}]},"fleetrun_devices_finished_total":1,"status":"failed"}`,
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[["status"]],"Metrics":[{"Name":"fleetrun_devices_finished_total","Unit":"Count"}]}]},"fleetrun_devices_finished_total":1,"status":"cancelled"}`,
		`{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"fleetrun/test","Dimensions":[[]],"Metrics":[{"Name":"fleetrun_ssm_throttles_total","Unit":"Count"}]}]},"fleetrun_ssm_throttles_total":1,"operation":"SendCommand"}`,
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if !sameJSON(t, got[i], want[i]) {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestEveryMetricHasAUnit(t *testing.T) {
	t.Parallel()
	for _, m := range metrics.All {
		if m.Unit != "Count" && m.Unit != "Seconds" {
			t.Errorf("%s has unit %q", m.Name, m.Unit)
		}
	}
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Errorf("%s: %v", a, err)
		return false
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	xj, _ := json.Marshal(x)
	yj, _ := json.Marshal(y)
	return string(xj) == string(yj)
}
