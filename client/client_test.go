package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

func TestProblemResponsesBecomeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        Error
		notFound    bool
		conflict    bool
		validation  bool
	}{
		{
			name: "validation", status: 422, contentType: api.MediaProblem,
			body: `{"type":"urn:fleetrun:problem:validation","title":"Invalid request","status":422,
				"detail":"2 fields are invalid","errors":[{"pointer":"/deviceIds/1","detail":"duplicate"},
				{"pointer":"/scriptUrl","detail":"outside the script root"}],"requestId":"r-body"}`,
			want: Error{Type: api.ProblemValidation, Title: "Invalid request", Status: 422, Detail: "2 fields are invalid",
				Errors:    []api.FieldError{{Pointer: "/deviceIds/1", Detail: "duplicate"}, {Pointer: "/scriptUrl", Detail: "outside the script root"}},
				RequestID: "r-header"},
			validation: true,
		},
		{
			name: "not found", status: 404, contentType: api.MediaProblem + "; charset=utf-8",
			body:     `{"type":"urn:fleetrun:problem:not-found","title":"Not found","status":404,"detail":"no task x"}`,
			want:     Error{Type: api.ProblemNotFound, Title: "Not found", Status: 404, Detail: "no task x", RequestID: "r-header"},
			notFound: true,
		},
		{
			name: "conflict keeps the task status", status: 409, contentType: api.MediaProblem,
			body:     `{"type":"urn:fleetrun:problem:conflict","title":"Conflict","status":409,"taskStatus":"completed"}`,
			want:     Error{Type: api.ProblemConflict, Title: "Conflict", Status: 409, TaskStatus: "completed", RequestID: "r-header"},
			conflict: true,
		},
		{
			name: "API Gateway message", status: 403, contentType: api.MediaJSON,
			body: `{"message":"Missing Authentication Token"}`,
			want: Error{Title: "Forbidden", Status: 403, Detail: "Missing Authentication Token", RequestID: "r-header"},
		},
		{
			name: "plain text from a proxy", status: 404, contentType: "text/plain",
			body:     "404 page not found\n",
			want:     Error{Title: "Not Found", Status: 404, Detail: "404 page not found", RequestID: "r-header"},
			notFound: true,
		},
		{
			name: "HTML from a proxy", status: 500, contentType: "text/html",
			body: "<html>oops</html>",
			want: Error{Title: "Internal Server Error", Status: 500, RequestID: "r-header"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.Header().Set(api.HeaderRequestID, "r-header")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			_, err := c.Get(t.Context(), "x")
			e, ok := AsError(err)
			if !ok {
				t.Fatalf("Get error = %v, want *Error", err)
			}
			if e.Type != tc.want.Type || e.Title != tc.want.Title || e.Status != tc.want.Status || e.Detail != tc.want.Detail ||
				e.TaskStatus != tc.want.TaskStatus || e.RequestID != tc.want.RequestID || !slices.Equal(e.Errors, tc.want.Errors) {
				t.Errorf("error = %+v, want %+v", *e, tc.want)
			}
			if IsNotFound(err) != tc.notFound || IsConflict(err) != tc.conflict || IsValidation(err) != tc.validation {
				t.Errorf("IsNotFound, IsConflict, IsValidation = %v, %v, %v; want %v, %v, %v",
					IsNotFound(err), IsConflict(err), IsValidation(err), tc.notFound, tc.conflict, tc.validation)
			}
			for _, f := range tc.want.Errors {
				if !strings.Contains(err.Error(), f.Pointer+": "+f.Detail) {
					t.Errorf("message %q does not name field %s", err.Error(), f.Pointer)
				}
			}
		})
	}
}

func TestSubmitRetriesWithTheSameIdempotencyKey(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		keys   []string
		bodies []string
	)
	c, clock := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		keys = append(keys, r.Header.Get(api.HeaderIdempotencyKey))
		bodies = append(bodies, string(body))
		n := len(keys)
		mu.Unlock()
		switch n {
		case 1:
			drop(t, w) // the answer is lost: the task may or may not have been created
		case 2:
			w.Header().Set("Retry-After", "7")
			writeProblem(w, api.Problem{Type: api.ProblemUnavailable, Title: "Unavailable", Status: 503})
		case 3:
			writeProblem(w, api.Problem{Type: api.ProblemInProgress, Title: "In progress", Status: 409})
		default:
			writeJSON(w, http.StatusAccepted, taskAt("t1", api.StatusPending, 1, 0, 2))
		}
	}))
	req := api.SubmitRequest{DeviceIDs: []string{"a", "b"}, ScriptURL: "run.sh", Args: []string{"--x"}}
	got, err := c.Submit(t.Context(), req)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if got.ID != "t1" || got.Status != api.StatusPending {
		t.Errorf("task = %s %s, want t1 pending", got.ID, got.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 4 {
		t.Fatalf("server saw %d requests, want 4", len(keys))
	}
	if keys[0] == "" || slices.ContainsFunc(keys, func(k string) bool { return k != keys[0] }) {
		t.Errorf("idempotency keys = %q, want one non-empty key repeated", keys)
	}
	if slices.ContainsFunc(bodies, func(b string) bool { return b != bodies[0] }) || !strings.Contains(bodies[0], `"deviceIds":["a","b"]`) {
		t.Errorf("bodies = %q, want the same request each time", bodies)
	}
	if s := clock.Slept(); len(s) != 3 || s[1] != 7*time.Second {
		t.Errorf("pauses = %v, want 3 with the second the server's Retry-After of 7s", s)
	}
}

func TestSubmitUsesTheGivenKeyAndMakesFreshOnes(t *testing.T) {
	t.Parallel()
	var keys []string
	var mu sync.Mutex
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get(api.HeaderIdempotencyKey))
		mu.Unlock()
		writeJSON(w, http.StatusAccepted, taskAt("t1", api.StatusPending, 1, 0, 1))
	}))
	req := api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "run.sh"}
	for _, opts := range [][]SubmitOption{{WithIdempotencyKey("deploy-42")}, nil, nil} {
		if _, err := c.Submit(t.Context(), req, opts...); err != nil {
			t.Fatal(err)
		}
	}
	if keys[0] != "deploy-42" || keys[1] == "" || keys[1] == keys[2] {
		t.Errorf("keys = %q, want the given key, then two different generated ones", keys)
	}
	if _, err := c.Submit(t.Context(), req, WithIdempotencyKey(strings.Repeat("k", 256))); err == nil {
		t.Error("Submit with a 256-character key succeeded, want an error")
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		header    string
		call      func(*Client) error
		wantCalls int32
		wantSleep time.Duration // the first pause, when it is exact
	}{
		{name: "503 is retried until the attempts run out", status: 503,
			call: func(c *Client) error { _, err := c.Get(context.Background(), "x"); return err }, wantCalls: 3},
		{name: "429 waits for Retry-After seconds", status: 429, header: "4",
			call: func(c *Client) error { _, err := c.Get(context.Background(), "x"); return err }, wantCalls: 3, wantSleep: 4 * time.Second},
		{name: "Retry-After as a date", status: 503, header: "Sun, 01 Jun 2025 12:00:09 GMT",
			call: func(c *Client) error { _, err := c.Cancel(context.Background(), "x"); return err }, wantCalls: 3, wantSleep: 9 * time.Second},
		{name: "Retry-After is capped", status: 503, header: "3600",
			call: func(c *Client) error { _, err := c.Get(context.Background(), "x"); return err }, wantCalls: 3, wantSleep: time.Minute},
		{name: "500 is not retried", status: 500,
			call: func(c *Client) error { _, err := c.Get(context.Background(), "x"); return err }, wantCalls: 1},
		{name: "404 is not retried", status: 404,
			call: func(c *Client) error { _, err := c.Get(context.Background(), "x"); return err }, wantCalls: 1},
		{name: "409 in progress is not retried on a read", status: 409,
			call: func(c *Client) error { _, err := c.Get(context.Background(), "x"); return err }, wantCalls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			c, clock := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				writeProblem(w, api.Problem{Type: api.ProblemInProgress, Title: http.StatusText(tc.status), Status: tc.status})
			}), WithRetry(RetryPolicy{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: time.Minute}))
			err := tc.call(c)
			if e, ok := AsError(err); !ok || e.Status != tc.status {
				t.Fatalf("error = %v, want *Error with status %d", err, tc.status)
			}
			if n := calls.Load(); n != tc.wantCalls {
				t.Errorf("server saw %d requests, want %d", n, tc.wantCalls)
			}
			slept := clock.Slept()
			if len(slept) != int(tc.wantCalls)-1 {
				t.Fatalf("pauses = %v, want %d", slept, tc.wantCalls-1)
			}
			if tc.wantSleep != 0 && slept[0] != tc.wantSleep {
				t.Errorf("first pause = %s, want %s", slept[0], tc.wantSleep)
			}
			for i, d := range slept {
				if d <= 0 || d > time.Minute {
					t.Errorf("pause %d = %s, want within (0, 1m]", i, d)
				}
			}
		})
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	c := &Client{retry: RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 9: time.Second} {
		for range 20 {
			if d := c.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

func TestNetworkErrorsAreRetriedForSafeCallsOnly(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			drop(t, w)
			return
		}
		writeJSON(w, http.StatusOK, taskAt("x", api.StatusRunning, 3, 1, 2))
	}))
	got, err := c.Get(t.Context(), "x")
	if err != nil || got.Version != 3 {
		t.Fatalf("Get = %+v, %v; want version 3 after one retry", got, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}

	// A call without retry (as a POST without an idempotency key would be) fails at once.
	calls.Store(0)
	_, err = c.do(t.Context(), call{method: http.MethodPost, path: "/tasks", body: []byte(`{}`)})
	if err == nil {
		t.Fatal("non-retryable call on a dropped connection succeeded")
	}
	if _, ok := AsError(err); ok {
		t.Errorf("error = %v, want a network error, not *Error", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestContextEndsRetries(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, api.Problem{Title: "Unavailable", Status: 503})
	}))
	ctx, cancel := context.WithCancel(t.Context())
	c.sleep = func(ctx context.Context, d time.Duration) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := c.Get(ctx, "x")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		endpoint string
		opts     []Option
	}{
		{endpoint: "ftp://x"},
		{endpoint: "127.0.0.1:8080"},
		{endpoint: "http://x", opts: []Option{WithToken("t"), WithSigV4("eu-west-1", staticCreds("a", "b", ""))}},
		{endpoint: "http://x", opts: []Option{WithSigV4("", staticCreds("a", "b", ""))}},
		{endpoint: "http://x", opts: []Option{WithRetry(RetryPolicy{})}},
		{endpoint: "http://x", opts: []Option{WithHTTPClient(nil)}},
	} {
		if _, err := New(tc.endpoint, tc.opts...); err == nil {
			t.Errorf("New(%q, %d options) succeeded, want an error", tc.endpoint, len(tc.opts))
		}
	}
}

func TestRequestsCarryTokenUserAgentAndBasePath(t *testing.T) {
	t.Parallel()
	var got *http.Request
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		writeJSON(w, http.StatusOK, taskAt("a/b", api.StatusRunning, 1, 0, 1))
	}), WithToken("s3cret"), WithUserAgent("deploy-bot/1.0"))
	// Rebase the client under a stage path, as an API Gateway endpoint has.
	c.base.Path = "/prod"
	if _, err := c.Get(t.Context(), "a/b"); err != nil {
		t.Fatal(err)
	}
	if got.URL.EscapedPath() != "/prod/tasks/a%2Fb" {
		t.Errorf("path = %s, want /prod/tasks/a%%2Fb", got.URL.EscapedPath())
	}
	if got.Header.Get("Authorization") != "Bearer s3cret" || got.Header.Get("User-Agent") != "deploy-bot/1.0" {
		t.Errorf("headers = %v, want the bearer token and user agent", got.Header)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete {
			t.Errorf("method = %s, want DELETE", r.Method)
		}
		switch r.URL.Path {
		case "/tasks/running":
			writeJSON(w, http.StatusAccepted, taskAt("running", api.StatusCancelling, 4, 1, 3))
		default:
			writeProblem(w, api.Problem{Type: api.ProblemConflict, Title: "Conflict", Status: 409, TaskStatus: api.StatusCompleted})
		}
	}))
	got, err := c.Cancel(t.Context(), "running")
	if err != nil || got.Status != api.StatusCancelling {
		t.Fatalf("Cancel = %+v, %v; want cancelling", got, err)
	}
	_, err = c.Cancel(t.Context(), "done")
	if e, ok := AsError(err); !IsConflict(err) || !ok || e.TaskStatus != api.StatusCompleted {
		t.Errorf("Cancel of a finished task = %v, want a conflict naming completed", err)
	}
}

func TestResultAndOutput(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/tasks/t1/result":
			writeJSON(w, http.StatusOK, api.Result{Status: api.StatusCompleted, SucceededDevices: []string{"a"}})
		case "/tasks/t2/result":
			w.Header().Set("Retry-After", "3")
			writeProblem(w, api.Problem{Type: api.ProblemNotFinished, Title: "Not finished", Status: 409, TaskStatus: api.StatusRunning})
		case "/tasks/t1/devices/d:1/output":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, r.URL.Query().Get("stream")+" of d:1\n")
		default:
			http.NotFound(w, r)
		}
	}))
	res, err := c.Result(t.Context(), "t1")
	if err != nil || res.Status != api.StatusCompleted || !slices.Equal(res.SucceededDevices, []string{"a"}) {
		t.Errorf("Result = %+v, %v", res, err)
	}
	_, err = c.Result(t.Context(), "t2")
	if e, ok := AsError(err); !IsNotFinished(err) || !ok || e.RetryAfter != 3*time.Second || e.TaskStatus != api.StatusRunning {
		t.Errorf("Result of a running task = %#v, want not-finished with Retry-After 3s", err)
	}
	for _, stream := range []Stream{Stdout, Stderr} {
		rc, err := c.Output(t.Context(), "t1", "d:1", stream)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if want := string(stream) + " of d:1\n"; string(b) != want {
			t.Errorf("Output(%s) = %q, want %q", stream, b, want)
		}
	}
	if _, err := c.Output(t.Context(), "t1", "nope", Stdout); !IsNotFound(err) {
		t.Errorf("Output of an unknown device = %v, want not found", err)
	}
}

// TestOutputFollowsARedirectWithoutCredentials checks that a large output's 303 is followed to
// the URL it names with none of the API's credentials: neither the bearer token nor a SigV4
// signature may reach another host (a presigned S3 URL carries its own).
func TestOutputFollowsARedirectWithoutCredentials(t *testing.T) {
	t.Parallel()
	var leaked []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if k == "Authorization" || strings.HasPrefix(k, "X-Amz-") {
				leaked = append(leaked, k)
			}
		}
		io.WriteString(w, "the whole of it\n")
	}))
	t.Cleanup(storage.Close)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			t.Errorf("the API request was not signed")
		}
		http.Redirect(w, r, storage.URL+"/big?X-Amz-Signature=abc", http.StatusSeeOther)
	})
	for name, opt := range map[string]Option{"token": WithToken("secret"), "sigv4": WithSigV4("eu-west-1", staticCreds("AKIDTEST", "secret", "session-token"))} {
		c, _ := newTestClient(t, api, opt)
		rc, err := c.Output(t.Context(), "t1", "d1", Stdout)
		if err != nil {
			t.Fatalf("%s: Output: %v", name, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "the whole of it\n" {
			t.Errorf("%s: Output = %q", name, b)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("credentials reached the redirect's host: %v", leaked)
	}
}
