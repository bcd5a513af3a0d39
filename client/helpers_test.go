package client

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

// newTestClient starts a server with h and returns a client of it on a fake clock.
func newTestClient(t *testing.T, h http.Handler, opts ...Option) (*Client, *clocktest.Clock) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clock := clocktest.New(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	c.now, c.sleep = clock.Now, clock.Sleep
	return c, clock
}

// drop closes the connection under w without answering, as a crashing proxy would.
func drop(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", api.MediaJSON)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, p api.Problem) {
	w.Header().Set("Content-Type", api.MediaProblem)
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

func taskAt(id, status string, version int64, done, total int) api.Task {
	return api.Task{ID: id, Status: status, Version: version,
		Progress: api.Progress{Devices: api.DeviceCounts{Total: total, Succeeded: done, Running: total - done}}}
}
