package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// requestLines returns the JSON request log lines written to logs.
func requestLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if rec["msg"] == "request" {
			out = append(out, rec)
		}
	}
	return out
}

func TestRequestLogCarriesTaskIDAndOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	logs := &syncBuffer{}
	b.handler.log = slog.New(slog.NewJSONHandler(logs, nil))
	tk := b.submit("web-1")
	if r := b.do(req{method: "GET", path: "/tasks/" + tk.ID, token: aliceToken}); r.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d %s", r.StatusCode, r.body)
	}
	b.do(req{method: "GET", path: "/tasks/" + tk.ID + "/devices/web-1", token: bobToken})
	b.do(req{method: "GET", path: "/tasks/" + tk.ID})
	b.do(req{method: "GET", path: "/healthz"})

	lines := requestLines(t, logs.String())
	if len(lines) != 5 {
		t.Fatalf("%d request lines, want one per request:\n%s", len(lines), logs.String())
	}
	want := []struct {
		path, taskID, owner string
		status              float64
	}{
		{"/tasks", "", "alice", 202},
		{"/tasks/" + tk.ID, tk.ID, "alice", 200},
		{"/tasks/" + tk.ID + "/devices/web-1", tk.ID, "bob", 404},
		{"/tasks/" + tk.ID, tk.ID, "", 401}, // no caller identified
		{"/healthz", "", "", 200},
	}
	for i, w := range want {
		got := lines[i]
		taskID, _ := got["task_id"].(string)
		owner, _ := got["owner"].(string)
		if got["path"] != w.path || taskID != w.taskID || owner != w.owner || got["status"] != w.status {
			t.Errorf("line %d = %v, want path %s task_id %q owner %q status %v", i, got, w.path, w.taskID, w.owner, w.status)
		}
		if _, ok := got["duration"].(float64); !ok || got["request_id"] == "" || got["method"] != "GET" && i > 0 {
			t.Errorf("line %d = %v, want its duration, request_id and method", i, got)
		}
	}
}
