package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// maxRepresentationBytes bounds the task bodies GET /tasks/{id} keeps, about 16,000 tasks'
// worth: a server polled for that many tasks renders each once per change.
const maxRepresentationBytes = 16 << 20

// representations keeps the latest rendered body of GET /tasks/{id} of each task recently
// read, so that polling a task that has not changed costs a lookup and a write instead of a
// rendering and a JSON encoding each time.
//
// A body is keyed by the task's version and the base URL of its links: every write that
// changes a task raises its version (the ETag says the same), and the links are the only part
// that depends on the request. A body is served only for the exact version it was rendered
// from, so a task that changed is always rendered again, and a body rendered from an older
// version never replaces one of a newer.
type representations struct {
	mu    sync.Mutex
	tasks map[string]representation
	size  int // bytes of the bodies kept
	// encode turns a task's wire form into its body; a test counts the calls.
	encode func(v any) ([]byte, error)
}

// representation is one task's body as rendered from one version.
type representation struct {
	version int64
	base    string
	body    []byte
}

func newRepresentations() *representations {
	return &representations{tasks: map[string]representation{}, encode: encodeBody}
}

// encodeBody is the body writeJSON writes for v: its JSON and a newline.
func encodeBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}

// body returns t's body with links based on l, rendered and encoded only when no body of t's
// version with those links is kept.
func (c *representations) body(t *task.Task, l links) ([]byte, error) {
	c.mu.Lock()
	r, ok := c.tasks[t.ID]
	c.mu.Unlock()
	if ok && r.version == t.Version && r.base == l.base {
		return r.body, nil
	}
	body, err := c.encode(l.renderTask(t))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	kept, ok := c.tasks[t.ID]
	if ok && kept.version > t.Version {
		return body, nil
	}
	c.size += len(body) - len(kept.body)
	for id, other := range c.tasks { // any others: they are rendered again when read
		if c.size <= maxRepresentationBytes {
			break
		}
		if id != t.ID {
			delete(c.tasks, id)
			c.size -= len(other.body)
		}
	}
	c.tasks[t.ID] = representation{version: t.Version, base: l.base, body: body}
	return body, nil
}

// writeBody writes a JSON body already encoded.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", api.MediaJSON)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
