package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
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

func TestLinksIgnoreHostAndForwardedHeadersByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addr := strings.TrimPrefix(b.srv.URL, "http://")
	submit := "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer " + aliceToken + "\r\n%s" +
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
	body := submitBody("web-1")
	cases := []struct {
		name, target, host, extra string
		status                    int
	}{
		{"a spoofed Host", "/tasks", "evil.example", "", http.StatusAccepted},
		{"a spoofed Host behind a spoofed proxy", "/tasks", "evil.example", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n", http.StatusAccepted},
		{"an absolute-form target", "http://evil.example/tasks", addr, "", http.StatusAccepted},
		{"an empty Host", "/tasks", "", "", http.StatusBadRequest},
		// net/http answers this one itself, before any handler, in plain text.
		{"a Host with a path", "/tasks", "evil.example/x", "", http.StatusBadRequest},
		{"a Host with a bad port", "/tasks", "evil.example:99999", "", http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rawRequest(t, addr, fmt.Sprintf(submit, c.target, c.host, c.extra, len(body), body))
			if r.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, c.status, r.body)
			}
			if c.status != http.StatusAccepted {
				if !strings.Contains(c.host, "/") {
					wantProblem(t, r, c.status, api.ProblemMalformed)
				}
				return
			}
			if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, b.srv.URL+"/tasks/") {
				t.Errorf("Location %q, want it under the listener's %s", loc, b.srv.URL)
			}
		})
	}
}

func TestBaseURLChoices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hr := func(host string, header http.Header) *http.Request {
		r := httptest.NewRequest("GET", "/tasks", nil)
		r.Host, r.Header = host, header
		return r
	}
	cases := []struct {
		name string
		base func(*http.Request) string
		r    *http.Request
		want string
	}{
		{"public URL", PublicURL("https://fleet.example.com"), hr("evil.example", http.Header{"X-Forwarded-Host": {"evil.example"}}), "https://fleet.example.com"},
		{"trusted proxy", ForwardedBaseURL, hr("internal:8080", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"fleet.example.com"}}), "https://fleet.example.com"},
		{"trusted proxy passing Host on", ForwardedBaseURL, hr("fleet.example.com", http.Header{"X-Forwarded-Proto": {"HTTPS, http"}}), "https://fleet.example.com"},
		{"trusted proxy, bogus values ignored", ForwardedBaseURL, hr("fleet.example.com", http.Header{"X-Forwarded-Proto": {"gopher"}, "X-Forwarded-Host": {"a/b"}}), "http://fleet.example.com"},
		{"no listener: the checked Host", ListenerBaseURL, hr("127.0.0.1:9", http.Header{"X-Forwarded-Host": {"evil.example"}}), "http://127.0.0.1:9"},
	}
	for _, c := range cases {
		if got := c.base(c.r); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	custom := newHandler(Config{Engine: b.engine, Owner: BearerTokens(nil, "alice"), Watcher: b.watcher,
		BaseURL: PublicURL("https://api.example.com/v1/"), RetryAfter: 2500 * time.Millisecond})
	w := httptest.NewRecorder()
	custom.ServeHTTP(w, httptest.NewRequest("POST", "/tasks", strings.NewReader(submitBody("web-1"))).WithContext(t.Context()))
	if w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("status %d without Content-Type", w.Code)
	}
	r := httptest.NewRequest("POST", "/tasks", strings.NewReader(submitBody("web-1")))
	r.Header.Set("Content-Type", "application/json")
	w = httptest.NewRecorder()
	custom.ServeHTTP(w, r)
	if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, "https://api.example.com/v1/tasks/") {
		t.Errorf("Location %q with a configured base", loc)
	}
	if ra := w.Header().Get("Retry-After"); ra != "3" {
		t.Errorf("Retry-After %q for 2.5s, want 3", ra)
	}
}

func TestValidHost(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{
		"example.com": true, "example.com:8080": true, "127.0.0.1:8080": true, "[::1]:8080": true, "[::1]": true,
		"localhost": true, "my_host.internal.": true,
		"": false, "a b": false, "example.com:": false, "example.com:x": false, "example.com:65536": false,
		"[::1": false, "[127.0.0.1]": false, "[::1]x": false, "-bad.example": false, "a..b": false, "ex/ample": false,
		"user@host": false, strings.Repeat("a", 64) + ".com": false,
	} {
		if got := validHost(h); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}

// rawRequest sends text as one HTTP/1.1 request on a new connection to addr and reads the
// answer, for requests a Go client would not send.
func rawRequest(t *testing.T, addr, text string) resp {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	return resp{r, body}
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
