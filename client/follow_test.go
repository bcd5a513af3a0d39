package client

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fleetrun/fleetrun/api"
)

// TestFollowOutputResumesWhereAnAnswerEnded serves a followed output in pieces, as API
// Gateway does when it ends a streamed answer (15 minutes) or cuts one: the first answer ends
// cleanly while the device runs, the second is cut mid-way, the third ends with the device.
// The reader follows again from the offset it has each time, and once the device has ended
// it follows once more, from the end, and stops: the output comes out once, whole.
func TestFollowOutputResumesWhereAnAnswerEnded(t *testing.T) {
	t.Parallel()
	const output = "line 1\nline 2\nline 3\nline 4\n"
	var (
		mu      sync.Mutex
		offsets []string
		status  = api.DeviceRunning
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !strings.HasSuffix(r.URL.Path, "/output") {
			writeJSON(w, http.StatusOK, api.Device{ID: "web-1", Status: status})
			return
		}
		if r.URL.Query().Get("follow") != "true" {
			t.Errorf("a follow without follow=true: %s", r.URL)
		}
		offset := r.URL.Query().Get("offset")
		offsets = append(offsets, offset)
		from, _ := strconv.Atoi(offset)
		w.Header().Set("Content-Type", "text/plain")
		switch len(offsets) {
		case 1: // ends cleanly before the device does
			io.WriteString(w, output[from:14])
		case 2: // cut: a length promised and not delivered
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, output[from:21])
			http.NewResponseController(w).Flush()
			drop(t, w)
		case 3: // ends with the device
			io.WriteString(w, output[from:])
			status = api.DeviceSucceeded
		default: // asked after the end: nothing more
			io.WriteString(w, output[from:])
		}
	})
	c, _ := newTestClient(t, h)
	rc, err := c.FollowOutput(context.Background(), "T1", "web-1", Stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != output {
		t.Fatalf("followed %q, %v; want %q", got, err, output)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"", "14", "21", "28"}; strings.Join(offsets, ",") != strings.Join(want, ",") {
		t.Errorf("followed from offsets %q, want %q", offsets, want)
	}
}
