package httpapi

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

func TestHealthzNeedsNoCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(req{method: "GET", path: "/healthz"})
	if r.StatusCode != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", r.StatusCode, r.body)
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"no credentials", nil},
		{"unknown token", http.Header{"Authorization": {"Bearer nope"}}},
		{"token of another scheme", http.Header{"Authorization": {"Basic " + aliceToken}}},
		{"token without scheme", http.Header{"Authorization": {aliceToken}}},
	} {
		for _, r := range []req{
			{method: "GET", path: "/tasks"},
			{method: "POST", path: "/tasks", body: submitBody("web-1")},
			{method: "GET", path: "/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV"},
		} {
			r.header = tc.header
			got := b.do(r)
			wantProblem(t, got, http.StatusUnauthorized, api.ProblemUnauthorized)
			if !strings.HasPrefix(got.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s %s: WWW-Authenticate %q", tc.name, r.method, r.path, got.Header.Get("WWW-Authenticate"))
			}
		}
	}
	if stored := b.storedTasks(""); len(stored) != 0 {
		t.Errorf("an unauthorized submit stored %d tasks", len(stored))
	}
	// The scheme is case-insensitive.
	if r := b.do(req{method: "GET", path: "/tasks", header: http.Header{"Authorization": {"bearer " + aliceToken}}}); r.StatusCode != http.StatusOK {
		t.Errorf("lower-case bearer: %d", r.StatusCode)
	}
}

func TestBearerTokens(t *testing.T) {
	t.Parallel()
	open := BearerTokens(nil, "local")
	r := httptest.NewRequest("GET", "/tasks", nil)
	if owner, err := open(r); owner != "local" || err != nil {
		t.Errorf("no tokens: owner %q, err %v; want the fallback owner", owner, err)
	}
	closed := BearerTokens(map[string]string{"s1": "ann", "s2": "ben"}, "local")
	for _, tc := range []struct {
		auth, owner string
	}{
		{"Bearer s1", "ann"},
		{"Bearer s2", "ben"},
		{"Bearer s3", ""},
		{"Bearer ", ""},
		{"Bearer s1x", ""},
		{"", ""},
	} {
		r := httptest.NewRequest("GET", "/tasks", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		owner, err := closed(r)
		if owner != tc.owner || (err != nil) != (tc.owner == "") {
			t.Errorf("Authorization %q: owner %q, err %v; want %q", tc.auth, owner, err, tc.owner)
		}
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	for _, tc := range []struct {
		method, path string
		allow        string
	}{
		{"PUT", "/tasks/" + created.ID, "GET, HEAD, DELETE"},
		{"PATCH", "/tasks", "GET, HEAD, POST"},
		{"POST", "/tasks/" + created.ID + "/result", "GET, HEAD"},
		{"DELETE", "/healthz", "GET, HEAD"},
	} {
		r := b.do(req{method: tc.method, path: tc.path, token: aliceToken})
		wantProblem(t, r, http.StatusMethodNotAllowed, api.ProblemMethodNotAllowed)
		if got := r.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	for _, path := range []string{"/", "/task", "/tasks/" + created.ID + "/nope", "/tasks/" + created.ID + "/devices/web-1/output/more"} {
		wantProblem(t, b.do(req{method: "GET", path: path, token: aliceToken}), http.StatusNotFound, api.ProblemNotFound)
	}
	if got := b.storedTasks("alice"); len(got) != 1 || got[0].Status != "pending" {
		t.Errorf("a refused method changed the task: %+v", got)
	}
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	generated := regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	for _, tc := range []struct {
		sent string
		keep bool
	}{
		{"client-id_1.2", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"has space", false},
		{"new\\line", false},
		{"", false},
	} {
		var h http.Header
		if tc.sent != "" {
			h = http.Header{api.HeaderRequestID: {tc.sent}}
		}
		for _, r := range []req{{method: "GET", path: "/healthz", header: h}, {method: "GET", path: "/nope", header: h}} {
			got := b.do(r).Header.Get(api.HeaderRequestID)
			if tc.keep && got != tc.sent || !tc.keep && (got == tc.sent || !generated.MatchString(got)) {
				t.Errorf("sent %q to %s, answered %q", tc.sent, r.path, got)
			}
		}
	}
	a, c := b.do(req{method: "GET", path: "/healthz"}), b.do(req{method: "GET", path: "/healthz"})
	if a.Header.Get(api.HeaderRequestID) == c.Header.Get(api.HeaderRequestID) {
		t.Error("two requests got the same generated id")
	}
}

func TestEveryRequestIsLogged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.do(req{method: "GET", path: "/tasks/missing", token: aliceToken, header: http.Header{api.HeaderRequestID: {"trace-42"}}})
	logs := b.logs.String()
	line := ""
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, "request_id=trace-42") && strings.Contains(l, "msg=request") {
			line = l
		}
	}
	for _, want := range []string{"level=INFO", "method=GET", "path=/tasks/missing", "status=404", "duration="} {
		if !strings.Contains(line, want) {
			t.Errorf("request log %q lacks %q (logs: %s)", line, want, logs)
		}
	}
}

func TestInternalErrorsAreLoggedNotShown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	b.store.broken.Store(true)
	r := b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken})
	p := wantProblem(t, r, http.StatusInternalServerError, api.ProblemInternal)
	if strings.Contains(string(r.body), "disk") || strings.Contains(string(r.body), "/secret") {
		t.Errorf("the problem leaks the cause: %s", r.body)
	}
	if !strings.Contains(b.logs.String(), "disk on fire") || !strings.Contains(b.logs.String(), p.RequestID) {
		t.Errorf("the cause is not logged with the request id: %s", b.logs.String())
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: submitBody("web-1"),
		header: http.Header{"X-Forwarded-Proto": {"https"}}})
	host := strings.TrimPrefix(b.srv.URL, "http://")
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://"+host+"/tasks/") {
		t.Errorf("Location %q behind a TLS proxy", loc)
	}
	r = b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: submitBody("web-1"),
		header: http.Header{"X-Forwarded-Proto": {"gopher"}}})
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "http://"+host+"/tasks/") {
		t.Errorf("Location %q with a bogus X-Forwarded-Proto", loc)
	}

	custom := newHandler(Config{Engine: b.engine, Owner: BearerTokens(nil, "alice"), Watcher: b.watcher,
		BaseURL: func(*http.Request) string { return "https://api.example.com/v1/" }, RetryAfter: 2500 * time.Millisecond})
	w := httptest.NewRecorder()
	custom.ServeHTTP(w, httptest.NewRequest("POST", "/tasks", strings.NewReader(submitBody("web-1"))).WithContext(t.Context()))
	if w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("status %d without Content-Type", w.Code)
	}
	hr := httptest.NewRequest("POST", "/tasks", strings.NewReader(submitBody("web-1")))
	hr.Header.Set("Content-Type", "application/json")
	w = httptest.NewRecorder()
	custom.ServeHTTP(w, hr)
	if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, "https://api.example.com/v1/tasks/") {
		t.Errorf("Location %q with a configured base", loc)
	}
	if ra := w.Header().Get("Retry-After"); ra != "3" {
		t.Errorf("Retry-After %q for 2.5s, want 3", ra)
	}
}

func TestPanicsAnswerAnInternalProblem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHandler(Config{Engine: b.engine, Watcher: b.watcher, Logger: b.handler.log,
		Owner: func(*http.Request) (string, error) { panic("owner lookup exploded") }})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/tasks", nil))
	r := resp{w.Result(), w.Body.Bytes()}
	wantProblem(t, r, http.StatusInternalServerError, api.ProblemInternal)
	if strings.Contains(w.Body.String(), "exploded") || !strings.Contains(b.logs.String(), "exploded") {
		t.Errorf("the panic should be logged, not shown: body %s", w.Body.String())
	}
}
