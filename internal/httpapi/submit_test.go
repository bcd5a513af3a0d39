package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

func TestSubmitAccepts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, ctype: "application/json; charset=utf-8",
		body: `{"deviceIds":["web-1","web-2"],"scriptUrl":"scripts/patch.sh","args":["--dry-run"],"maxErrors":"0"}`})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.StatusCode, r.body)
	}
	got := decode[api.Task](t, r)
	if got.Status != api.StatusPending || got.Version != 1 || got.Result != nil {
		t.Errorf("task %+v, want a pending task at version 1 with no result", got)
	}
	wantReq := api.TaskRequest{ScriptURL: "scripts/patch.sh", DeviceCount: 2, Args: []string{"--dry-run"},
		TimeoutSeconds: 3600, MaxConcurrency: "50", MaxErrors: "0"}
	if !equalRequest(got.Request, wantReq) {
		t.Errorf("request %+v, want %+v", got.Request, wantReq)
	}
	self := b.srv.URL + "/tasks/" + got.ID
	if loc := r.Header.Get("Location"); loc != self {
		t.Errorf("Location %q, want %q", loc, self)
	}
	if got.Links != (api.TaskLinks{Self: self, Devices: self + "/devices", Result: self + "/result", Events: self + "/events"}) {
		t.Errorf("links %+v", got.Links)
	}
	if ra := r.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Error("a first submit says Idempotent-Replayed")
	}
	if got.Progress != (api.Progress{Percentage: 0, CurrentStep: "queued", Devices: api.DeviceCounts{Total: 2, Pending: 2}}) {
		t.Errorf("progress %+v", got.Progress)
	}
	if got.CreatedAt.Location() != nil && got.CreatedAt.Location().String() != "UTC" {
		t.Errorf("createdAt %v is not UTC", got.CreatedAt)
	}
	if n := b.queue.len(); n != 1 {
		t.Errorf("%d messages queued, want 1 dispatch", n)
	}
	if stored := b.storedTasks("alice"); len(stored) != 1 || stored[0].ID != got.ID {
		t.Errorf("stored %v, want the one task", stored)
	}
}

func equalRequest(a, b api.TaskRequest) bool {
	return a.ScriptURL == b.ScriptURL && a.DeviceCount == b.DeviceCount && slices.Equal(a.Args, b.Args) &&
		a.TimeoutSeconds == b.TimeoutSeconds && a.MaxConcurrency == b.MaxConcurrency && a.MaxErrors == b.MaxErrors
}

// TestSubmitRejects checks that every kind of bad submit is refused with the right problem, and
// that nothing is stored or queued.
func TestSubmitRejects(t *testing.T) {
	t.Parallel()
	valid := submitBody("web-1")
	tests := []struct {
		name     string
		r        req
		status   int
		typ      string
		pointers []string // the pointers of the problem's errors, when it lists fields
	}{
		{"no content type", req{body: valid, ctype: "-"}, 415, api.ProblemUnsupportedMedia, nil},
		{"text/plain", req{body: valid, ctype: "text/plain"}, 415, api.ProblemUnsupportedMedia, nil},
		{"json suffix type", req{body: valid, ctype: "application/merge-patch+json"}, 415, api.ProblemUnsupportedMedia, nil},
		{"bad media type syntax", req{body: valid, ctype: "application/json; charset"}, 415, api.ProblemUnsupportedMedia, nil},
		{"too large", req{body: `{"deviceIds":["` + strings.Repeat("a", 2000) + `"],"scriptUrl":"scripts/x"}`}, 413, api.ProblemTooLarge, nil},
		{"empty body", req{ctype: "application/json"}, 400, api.ProblemMalformed, nil},
		{"not json", req{body: `deviceIds=web-1`}, 400, api.ProblemMalformed, nil},
		{"cut short", req{body: `{"deviceIds":["web-1"]`}, 400, api.ProblemMalformed, nil},
		{"trailing garbage", req{body: valid + `x`}, 400, api.ProblemMalformed, nil},
		{"two values", req{body: valid + ` {}`}, 400, api.ProblemMalformed, nil},
		{"a key twice", req{body: `{"scriptUrl":"../../etc/passwd","deviceIds":["web-1"],"scriptUrl":"scripts/x"}`}, 400, api.ProblemMalformed, nil},
		{"a key twice, once escaped", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","script\u0055rl":"/etc/passwd"}`}, 400, api.ProblemMalformed, nil},
		{"idempotency key too long", req{body: valid, header: http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}}}, 400, api.ProblemMalformed, nil},
		{"idempotency key not ascii", req{body: valid, header: http.Header{"Idempotency-Key": {"clé"}}}, 400, api.ProblemMalformed, nil},
		{"idempotency key twice", req{body: valid, header: http.Header{"Idempotency-Key": {"a", "b"}}}, 400, api.ProblemMalformed, nil},
		{"array body", req{body: `[]`}, 422, api.ProblemValidation, []string{""}},
		{"null body", req{body: `null`}, 422, api.ProblemValidation, []string{""}},
		{"device id of wrong type", req{body: `{"deviceIds":["web-1",7,"web-3",null],"scriptUrl":"scripts/x"}`}, 422, api.ProblemValidation, []string{"/deviceIds/1", "/deviceIds/3"}},
		{"device ids not an array", req{body: `{"deviceIds":"web-1","scriptUrl":"scripts/x"}`}, 422, api.ProblemValidation, []string{"/deviceIds"}},
		{"timeout not a number", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","timeoutSeconds":"60"}`}, 422, api.ProblemValidation, []string{"/timeoutSeconds"}},
		{"timeout fractional", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","timeoutSeconds":1.5}`}, 422, api.ProblemValidation, []string{"/timeoutSeconds"}},
		{"timeout zero", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","timeoutSeconds":0}`}, 422, api.ProblemValidation, []string{"/timeoutSeconds"}},
		{"empty settings", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","maxConcurrency":"","maxErrors":""}`}, 422, api.ProblemValidation, []string{"/maxConcurrency", "/maxErrors"}},
		{"max errors a number", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","maxErrors":0}`}, 422, api.ProblemValidation, []string{"/maxErrors"}},
		{"unknown fields", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","a/b":1,"priority":2}`}, 422, api.ProblemValidation, []string{"/a~1b", "/priority"}},
		{"no devices", req{body: `{"deviceIds":[],"scriptUrl":"scripts/x"}`}, 422, api.ProblemValidation, []string{"/deviceIds"}},
		{"bad and duplicate ids", req{body: `{"deviceIds":["web-1","bad id","web-1"],"scriptUrl":"scripts/x"}`}, 422, api.ProblemValidation, []string{"/deviceIds/1", "/deviceIds/2"}},
		{"script outside the root", req{body: `{"deviceIds":["web-1"],"scriptUrl":"/etc/passwd"}`}, 422, api.ProblemValidation, []string{"/scriptUrl"}},
		{"notify not an object", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":"https://hooks.example/a"}`}, 422, api.ProblemValidation, []string{"/notify"}},
		{"notify of wrong types", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":7,"events":"task.started","secret":"x"}}`}, 422, api.ProblemValidation,
			[]string{"/notify/events", "/notify/secret", "/notify/url"}},
		{"notify without a url", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{}}`}, 422, api.ProblemValidation, []string{"/notify/url"}},
		{"notify url refused", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"http://169.254.169.254/"}}`}, 422, api.ProblemValidation, []string{"/notify/url"}},
		{"notify events unknown and repeated", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"https://hooks.example/a","events":["task.finished","task.finished","task.exploded"]}}`},
			422, api.ProblemValidation, []string{"/notify/events/1", "/notify/events/2"}},
		{"notify with no events", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"https://hooks.example/a","events":[]}}`}, 422, api.ProblemValidation, []string{"/notify/events"}},
		{"notify names a key twice", req{body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"https://hooks.example/a","url":"http://10.0.0.1/"}}`}, 400, api.ProblemMalformed, nil},
		{"everything wrong", req{body: `{"scriptUrl":"","timeoutSeconds":172801,"maxConcurrency":"0","maxErrors":"101%"}`}, 422, api.ProblemValidation,
			[]string{"/deviceIds", "/scriptUrl", "/timeoutSeconds", "/maxConcurrency", "/maxErrors"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, bundleOptions{maxBodyBytes: 1024})
			tc.r.method, tc.r.path, tc.r.token = "POST", "/tasks", aliceToken
			p := wantProblem(t, b.do(tc.r), tc.status, tc.typ)
			var pointers []string
			for _, e := range p.Errors {
				pointers = append(pointers, e.Pointer)
			}
			if !slices.Equal(pointers, tc.pointers) {
				t.Errorf("error pointers %q, want %q (%+v)", pointers, tc.pointers, p.Errors)
			}
			if stored := b.storedTasks("alice"); len(stored) != 0 {
				t.Errorf("a refused submit stored %d tasks", len(stored))
			}
			if n := b.queue.len(); n != 0 {
				t.Errorf("a refused submit queued %d messages", n)
			}
		})
	}
}

func TestSubmitTooLargeWithoutContentLength(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{maxBodyBytes: 64})
	hr := b.newRequest(t.Context(), req{method: "POST", path: "/tasks", token: aliceToken, body: submitBody("web-1", "web-2", "web-3", "web-4")})
	hr.ContentLength = -1 // sent chunked, so only reading finds out
	res, err := b.srv.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", res.StatusCode)
	}
	if stored := b.storedTasks("alice"); len(stored) != 0 {
		t.Errorf("stored %d tasks", len(stored))
	}
}

func TestSubmitDuplicateKeyIsNamed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(req{method: "POST", path: "/tasks", token: aliceToken,
		body: `{"scriptUrl":"../../etc/passwd","deviceIds":["web-1"],"scriptUrl":"scripts/x"}`})
	p := wantProblem(t, r, http.StatusBadRequest, api.ProblemMalformed)
	if !strings.Contains(p.Detail, `"scriptUrl"`) {
		t.Errorf("detail %q does not name the key", p.Detail)
	}
}

func TestSubmitSlowBodyIsARequestTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{bodyTimeout: 200 * time.Millisecond})
	body := submitBody("web-1")
	// The headers promise a body; all but its last byte comes, then nothing.
	res := b.stalledDo(req{method: "POST", path: "/tasks", token: aliceToken, body: body})
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wantProblem(t, resp{res, data}, http.StatusRequestTimeout, api.ProblemTimeout)
	if stored := b.storedTasks("alice"); len(stored) != 0 {
		t.Errorf("stored %d tasks", len(stored))
	}

	// A body that arrives in time is read as usual, and the deadline does not outlive it.
	if r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: body}); r.StatusCode != http.StatusAccepted {
		t.Fatalf("a prompt body: %d %s", r.StatusCode, r.body)
	}
}

func TestSubmitIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := http.Header{"Idempotency-Key": {"retry-me-01"}}
	first := b.do(req{method: "POST", path: "/tasks", token: aliceToken, header: key,
		body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/patch.sh"}`})
	if first.StatusCode != http.StatusAccepted {
		t.Fatalf("first submit: %d %s", first.StatusCode, first.body)
	}
	created := decode[api.Task](t, first)

	// The same request, written differently, is the same request.
	replay := b.do(req{method: "POST", path: "/tasks", token: aliceToken, header: key,
		body: "{ \"scriptUrl\": \"scripts/patch.sh\",\n  \"deviceIds\": [\"web-1\"] }"})
	if replay.StatusCode != http.StatusAccepted || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d, Idempotent-Replayed %q: %s", replay.StatusCode, replay.Header.Get("Idempotent-Replayed"), replay.body)
	}
	if got := decode[api.Task](t, replay); got.ID != created.ID {
		t.Errorf("replay answered task %s, want %s", got.ID, created.ID)
	}
	if loc := replay.Header.Get("Location"); loc != created.Links.Self {
		t.Errorf("replay Location %q, want %q", loc, created.Links.Self)
	}

	other := b.do(req{method: "POST", path: "/tasks", token: aliceToken, header: key,
		body: `{"deviceIds":["web-2"],"scriptUrl":"scripts/patch.sh"}`})
	wantProblem(t, other, http.StatusUnprocessableEntity, api.ProblemIdempotencyMismatch)

	// Keys belong to their owner: bob's use of the same key is a task of his own.
	bobs := b.do(req{method: "POST", path: "/tasks", token: bobToken, header: key,
		body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/patch.sh"}`})
	if bobs.StatusCode != http.StatusAccepted || bobs.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("bob's submit: %d, replayed %q", bobs.StatusCode, bobs.Header.Get("Idempotent-Replayed"))
	}
	if got := decode[api.Task](t, bobs); got.ID == created.ID {
		t.Error("bob was answered alice's task")
	}
	if n := len(b.storedTasks("alice")); n != 1 {
		t.Errorf("alice has %d tasks, want 1", n)
	}
	if n := b.queue.len(); n != 2 {
		t.Errorf("%d dispatches queued, want 2 (alice's and bob's)", n)
	}
}

func TestSubmitQueueDownIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.queue.fail.Store(true)
	r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: submitBody("web-1")})
	wantProblem(t, r, http.StatusServiceUnavailable, api.ProblemUnavailable)
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestDecodeSubmitHashIgnoresLayout(t *testing.T) {
	t.Parallel()
	a, _, err := decodeSubmit([]byte(`{"deviceIds":["a","b"],"scriptUrl":"s","args":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := decodeSubmit([]byte("{\n \"scriptUrl\" : \"s\", \"deviceIds\": [\"a\", \"b\"]\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := decodeSubmit([]byte(`{"deviceIds":["b","a"],"scriptUrl":"s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if requestHash(a) != requestHash(b) {
		t.Error("the same request laid out differently hashes differently")
	}
	if requestHash(a) == requestHash(c) {
		t.Error("devices in another order hash the same")
	}
}

func TestSubmitIsRefusedBeforeItsBodyArrives(t *testing.T) {
	t.Parallel()
	b := setup(t) // no body timeout: only the answer's Connection: close lets it go out
	addr := strings.TrimPrefix(b.srv.URL, "http://")
	for _, tc := range []struct {
		name, auth, ctype string
		status            int
	}{
		{"no credentials", "", "application/json", http.StatusUnauthorized},
		{"a wrong token", "Authorization: Bearer wrong-secret\r\n", "application/json", http.StatusUnauthorized},
		{"a wrong media type", "Authorization: Bearer " + aliceToken + "\r\n", "text/plain", http.StatusUnsupportedMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			// A body of a megabyte is promised and never sent.
			fmt.Fprintf(conn, "POST /tasks HTTP/1.1\r\nHost: %s\r\n%sContent-Type: %s\r\nContent-Length: 1048576\r\n\r\n{", addr, tc.auth, tc.ctype)
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != tc.status || !res.Close {
				t.Errorf("status %d, close %v; want %d and the connection closed", res.StatusCode, res.Close, tc.status)
			}
		})
	}
}
