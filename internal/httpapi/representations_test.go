package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// countEncodes makes the handler's task bodies count their encodings.
func countEncodes(b *testBundle) *atomic.Int64 {
	var n atomic.Int64
	b.handler.tasks.encode = func(v any) ([]byte, error) {
		n.Add(1)
		return encodeBody(v)
	}
	return &n
}

// TestStatusOfAnUnchangedTaskIsNeitherWrittenNorEncodedAgain: reading a task that did not
// change writes nothing to the store and encodes nothing: the body is the one kept for its
// version, byte for byte. Once the task changes, the next read encodes its new version.
func TestStatusOfAnUnchangedTaskIsNeitherWrittenNorEncodedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	encodes := countEncodes(b)
	tk := b.submit("dev-1", "dev-2")
	get := func() resp {
		t.Helper()
		r := b.do(req{method: "GET", path: "/tasks/" + tk.ID, token: aliceToken})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d %s", r.StatusCode, r.body)
		}
		return r
	}
	first := get()
	writes, encoded := b.store.writes.Load(), encodes.Load()
	for range 5 {
		r := get()
		if !bytes.Equal(r.body, first.body) || r.Header.Get("ETag") != first.Header.Get("ETag") {
			t.Fatalf("an unchanged task read as %s (ETag %s), first %s (ETag %s)", r.body, r.Header.Get("ETag"), first.body, first.Header.Get("ETag"))
		}
	}
	if w, e := b.store.writes.Load()-writes, encodes.Load()-encoded; w != 0 || e != 0 {
		t.Errorf("5 reads of an unchanged task made %d store writes and %d encodings; want none", w, e)
	}

	b.deliver() // dispatch: the task starts, a write that raises its version
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "dev-1", Status: task.DeviceRunning, At: b.clock.Now()})
	changed := get()
	var was, now api.Task
	if err := json.Unmarshal(first.body, &was); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(changed.body, &now); err != nil {
		t.Fatal(err)
	}
	if now.Version <= was.Version || now.Status != "running" || now.Progress.Devices.Running != 1 ||
		changed.Header.Get("ETag") != etag(now.Version) {
		t.Errorf("after the task changed: version %d (was %d), %s, %+v, ETag %s", now.Version, was.Version, now.Status,
			now.Progress.Devices, changed.Header.Get("ETag"))
	}
	if e := encodes.Load() - encoded; e != 1 {
		t.Errorf("the changed task was encoded %d times, want once", e)
	}
}

// TestAKeptBodyIsNeverServedForAnotherVersion: a body is served only for the version and the
// links it was rendered with, and one rendered from an older version, by a read that was
// slower than a later one, never replaces a newer body.
func TestAKeptBodyIsNeverServedForAnotherVersion(t *testing.T) {
	t.Parallel()
	c := newRepresentations()
	var encodes int
	c.encode = func(v any) ([]byte, error) { encodes++; return encodeBody(v) }
	l := links{base: "http://fleet.example"}
	v1 := &task.Task{ID: "t1", Status: task.StatusRunning, Version: 1, Counts: task.Counts{Total: 2, Running: 2}}
	v2 := &task.Task{ID: "t1", Status: task.StatusRunning, Version: 2, Counts: task.Counts{Total: 2, Running: 1, Succeeded: 1}}
	version := func(body []byte) int64 {
		t.Helper()
		var out api.Task
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Version
	}
	steps := []struct {
		t           *task.Task
		l           links
		wantVersion int64
		wantEncodes int
	}{
		{v1, l, 1, 1},
		{v1, l, 1, 1}, // kept
		{v2, l, 2, 2}, // a newer version is rendered
		{v1, l, 1, 3}, // an older read gets its own version...
		{v2, l, 2, 3}, // ...and did not replace the newer body
		{v2, links{base: "http://other.example"}, 2, 4}, // other links are rendered
	}
	for i, s := range steps {
		body, err := c.body(s.t, s.l)
		if err != nil {
			t.Fatal(err)
		}
		if got := version(body); got != s.wantVersion || encodes != s.wantEncodes {
			t.Errorf("step %d: body of version %d after %d encodings, want version %d after %d", i, got, encodes, s.wantVersion, s.wantEncodes)
		}
	}
}
