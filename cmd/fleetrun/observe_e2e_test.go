package main

// End-to-end tests of what an operator sees of `fleetrun serve`: its metrics and its logs.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/metrics"
)

// sample returns the value of the series name{labels} ("" for none) in a Prometheus text
// exposition, and whether it is there.
func sample(exposition, name, labels string) (float64, bool) {
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	for line := range strings.SplitSeq(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func TestMetricsEndpointChangesAsTasksRun(t *testing.T) {
	t.Parallel()
	const token = "alice=alice-metrics-secret"
	auth := []string{"Authorization", "Bearer alice-metrics-secret"}
	s := startServer(t, t.TempDir(), scriptRoot(t), "--token", token)
	scrape := func() string {
		t.Helper()
		r := s.do(http.MethodGet, "/metrics", nil, auth...)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET /metrics: %d %s: %.300s", r.status, r.header.Get("Content-Type"), r.body)
		}
		return string(r.body)
	}
	if r := s.do(http.MethodGet, "/metrics", nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the token: %d, want 401 as for the API", r.status)
	}

	before := scrape()
	for _, m := range metrics.All {
		if !strings.Contains(before, "# TYPE "+m.Name+" ") {
			t.Errorf("/metrics does not expose %s", m.Name)
		}
	}
	if v, ok := sample(before, metrics.TasksSubmitted, ""); !ok || v != 0 {
		t.Errorf("%s before any task = %v, %v; want 0", metrics.TasksSubmitted, v, ok)
	}

	tk := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1", "d2", "d3"}, ScriptURL: "flaky.sh"}, auth...)
	clocktest.Eventually(t, 30*time.Second, func() error {
		var got api.Task
		r := s.do(http.MethodGet, "/tasks/"+tk.ID, nil, append(auth, "Prefer", "wait=2")...)
		r.decode(t, &got)
		if got.Status != api.StatusCompleted {
			return fmt.Errorf("task %s is %s: %s", tk.ID, got.Status, r.body)
		}
		return nil
	})

	after := scrape()
	want := []struct {
		name, labels string
		value        float64
	}{
		{metrics.TasksSubmitted, "", 1},
		{metrics.TasksFinished, `status="completed"`, 1},
		{metrics.TasksFinished, `status="failed"`, 0},
		{metrics.DevicesFinished, `status="succeeded"`, 2},
		{metrics.DevicesFinished, `status="failed"`, 1},
		{metrics.DispatchLatency + "_count", "", 1},
		{metrics.TaskDuration + "_count", `status="completed"`, 1},
		{metrics.SSMThrottles, "", 0},
	}
	for _, w := range want {
		if v, ok := sample(after, w.name, w.labels); !ok || v != w.value {
			t.Errorf("%s{%s} = %v (present %v), want %v", w.name, w.labels, v, ok, w.value)
		}
	}
}

// jsonLines returns the server's complete JSON log lines whose msg is msg.
func jsonLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	lines := strings.Split(logs, "\n")
	for _, line := range lines[:len(lines)-1] { // the last is empty, or still being written
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("--log-format json wrote a line that is not JSON: %v: %q", err, line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// awaitLine waits for the server to log a JSON line with msg that match accepts.
func awaitLine(t *testing.T, s *server, msg string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	clocktest.Eventually(t, 10*time.Second, func() error {
		for _, rec := range jsonLines(t, s.logs.String(), msg) {
			if match(rec) {
				found = rec
				return nil
			}
		}
		return fmt.Errorf("no %q line that matches in the server's log:\n%s", msg, s.logs)
	})
	return found
}

func TestJSONRequestLogCarriesTheTaskID(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t), "--log-format", "json")
	tk := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh"})
	s.get(tk.ID)
	// The line is written once the response has gone out.
	found := awaitLine(t, s, "request", func(rec map[string]any) bool {
		return rec["method"] == "GET" && rec["path"] == "/tasks/"+tk.ID
	})
	if found["task_id"] != tk.ID || found["owner"] != "local" || found["status"] != float64(200) ||
		found["request_id"] == nil || found["duration"] == nil {
		t.Errorf("request line = %v, want task_id %s, owner local, status 200, request_id and duration", found, tk.ID)
	}
}

func TestMetricsAddrServesMetricsApart(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t), "--token", "alice=alice-metrics-secret",
		"--metrics-addr", "127.0.0.1:0", "--log-format", "json")
	rec := awaitLine(t, s, "metrics serving", func(map[string]any) bool { return true })
	addr, _ := rec["addr"].(string)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics on --metrics-addr without a token: %d, want 200", resp.StatusCode)
	}
	if r := s.do(http.MethodGet, "/metrics", nil, "Authorization", "Bearer alice-metrics-secret"); r.status != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's address with --metrics-addr: %d, want 404", r.status)
	}
}
