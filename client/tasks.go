package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetrun/fleetrun/api"
)

// SubmitOption configures one Submit.
type SubmitOption func(*submitConfig)

type submitConfig struct {
	key string
}

// WithIdempotencyKey makes Submit send key as its Idempotency-Key instead of a fresh random
// one. Submitting again with the same key and request returns the task the first submit
// created, so a caller that persists the key before submitting can retry across restarts.
func WithIdempotencyKey(key string) SubmitOption {
	return func(s *submitConfig) { s.key = key }
}

// Submit asks the server to run req and returns the new task, normally still pending.
//
// Every submit carries an Idempotency-Key (a random one unless WithIdempotencyKey gives it),
// which is what makes it safe to retry: a submit whose answer was lost to a dropped connection,
// a 429 or a 503 is sent again with the same key, and the server answers with the task the
// first attempt created rather than creating a second.
func (c *Client) Submit(ctx context.Context, req api.SubmitRequest, opts ...SubmitOption) (*api.Task, error) {
	return c.create(ctx, "/tasks", "submit", req, opts)
}

// create POSTs req to path, a request that creates a task, with an Idempotency-Key (opts'
// or a fresh one), and returns the task.
func (c *Client) create(ctx context.Context, path, what string, req any, opts []SubmitOption) (*api.Task, error) {
	var cfg submitConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.key == "" {
		cfg.key = c.newKey()
	}
	if len(cfg.key) > api.MaxIdempotencyKeyLength {
		return nil, fmt.Errorf("client: idempotency key is %d characters, more than %d", len(cfg.key), api.MaxIdempotencyKeyLength)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: encode %s request: %w", what, err)
	}
	var t api.Task
	_, err = c.doJSON(ctx, call{method: http.MethodPost, path: path, body: body, retry: true,
		header: http.Header{api.HeaderIdempotencyKey: {cfg.key}}}, &t)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Get returns task id as it is now. A task that does not exist, or belongs to another caller,
// is an error for which IsNotFound is true.
func (c *Client) Get(ctx context.Context, id string) (*api.Task, error) {
	var t api.Task
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: taskPath(id), retry: true}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Cancel cancels task id and returns it as it now is: cancelled when it had not started,
// cancelling while its devices are being stopped (Wait for cancelled). Cancelling again is
// harmless. A task that already finished cannot be cancelled: the error satisfies IsConflict
// and its TaskStatus says how the task ended.
func (c *Client) Cancel(ctx context.Context, id string) (*api.Task, error) {
	var t api.Task
	if _, err := c.doJSON(ctx, call{method: http.MethodDelete, path: taskPath(id), retry: true}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Result returns the outcome of finished task id. Before the task finishes the error satisfies
// IsNotFinished, and its RetryAfter says when to ask again.
func (c *Client) Result(ctx context.Context, id string) (*api.Result, error) {
	var r api.Result
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: taskPath(id, "result"), retry: true}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Stream names one of a device's output streams.
type Stream string

// The output streams of a device.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Output returns the full output that device deviceID of task id wrote on stream, where the
// device list holds only its beginning. The caller closes it.
//
// An output too large for the API to answer with (on AWS, over 4 MiB) comes as a 303 to a
// presigned URL, which is fetched without the client's token or signature: the URL carries
// its own credentials, and ours are not for its host.
func (c *Client) Output(ctx context.Context, id, deviceID string, stream Stream) (io.ReadCloser, error) {
	if stream == "" {
		stream = Stdout
	}
	resp, err := c.do(ctx, call{method: http.MethodGet, path: taskPath(id, "devices", deviceID, "output"),
		query: url.Values{"stream": {string(stream)}}, retry: true, noRedirect: true,
		header: http.Header{"Accept": {"text/plain, " + api.MediaProblem}}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSeeOther {
		return resp.Body, nil
	}
	resp.Body.Close()
	where, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("client: output of %s on %s: redirect without a usable Location: %w", id, deviceID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("client: output of %s on %s: %w", id, deviceID, err)
	}
	out, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: output of %s on %s from %s: %w", id, deviceID, where.Host, err)
	}
	if out.StatusCode != http.StatusOK {
		out.Body.Close()
		return nil, fmt.Errorf("client: output of %s on %s from %s: %s", id, deviceID, where.Host, out.Status)
	}
	return out.Body, nil
}

// doJSON sends cl and decodes its JSON answer into out.
func (c *Client) doJSON(ctx context.Context, cl call, out any) (*http.Response, error) {
	cl.buffer = true
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("client: %s %s: decode %d answer: %w", cl.method, c.describe(cl), resp.StatusCode, err)
	}
	return resp, nil
}

// taskPath is the escaped path of task id, or of one of its sub-resources.
func taskPath(id string, rest ...string) string {
	var b strings.Builder
	b.WriteString("/tasks/")
	b.WriteString(url.PathEscape(id))
	for _, r := range rest {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(r))
	}
	return b.String()
}

// preferWait is the Prefer header asking the server to hold a request up to secs seconds.
func preferWait(secs int) string { return "wait=" + strconv.Itoa(secs) }
