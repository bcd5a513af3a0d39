package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// sseEvent is one Server-Sent Event, or a comment when comment is set.
type sseEvent struct {
	id, event, data, comment string
}

// sseReader reads events from a stream. A block that sets the reconnection time (the first,
// and the last with the comment that says why the stream ends) is not an event: its retry and
// comment are kept.
type sseReader struct {
	sc            *bufio.Scanner
	retry, ending string
}

func newSSEReader(r *http.Response) *sseReader {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	return &sseReader{sc: sc}
}

// next returns the next event or comment; ok is false at the end of the stream.
func (s *sseReader) next() (ev sseEvent, ok bool) {
	started, retry := false, false
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" {
			switch {
			case retry:
				s.ending = ev.comment
				ev = sseEvent{}
			case started:
				return ev, true
			}
			started, retry = false, false
			continue
		}
		started = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.comment = value
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			ev.data += value
		case "retry":
			s.retry, retry = value, true
		}
	}
	return ev, false
}

// taskEvent checks ev is a task event and returns its task.
func taskEvent(t *testing.T, ev sseEvent) api.Task {
	t.Helper()
	if ev.event != "task" {
		t.Fatalf("event %+v, want a task event", ev)
	}
	var got api.Task
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	if ev.id != strconv.FormatInt(got.Version, 10) {
		t.Fatalf("event id %q for version %d", ev.id, got.Version)
	}
	return got
}

func (b *testBundle) openEvents(ctx context.Context, path string, header http.Header) *http.Response {
	b.t.Helper()
	res, err := b.srv.Client().Do(b.newRequest(ctx, req{method: "GET", path: path, token: aliceToken, header: header}))
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	b.t.Cleanup(func() { res.Body.Close() })
	return res
}

func TestEventsFollowATaskToItsEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{keepAlive: 50 * time.Millisecond})
	created := b.submit("web-1", "web-2")
	res := b.openEvents(t.Context(), created.Links.Events, nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != api.MediaEventStream || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d, Content-Type %q, Cache-Control %q", res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"))
	}
	events := newSSEReader(res)
	ev, _ := events.next()
	if got := taskEvent(t, ev); got.Status != api.StatusPending || got.Version != 1 {
		t.Fatalf("first event %s v%d, want the current state", got.Status, got.Version)
	}
	if events.retry != "1000" {
		t.Errorf("the stream set the reconnection time to %q, want 1000 (ms)", events.retry)
	}
	// With nothing happening, the stream says it is alive.
	if ev, _ := events.next(); ev.comment != "keep-alive" {
		t.Fatalf("got %+v, want a keep-alive comment", ev)
	}
	b.deliver()
	b.report(created.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)})
	b.report(created.ID, task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceSucceeded, ExitCode: new(0)})
	var last api.Task
	for {
		ev, ok := events.next()
		if !ok {
			break
		}
		if ev.comment != "" {
			continue
		}
		got := taskEvent(t, ev)
		if got.Version <= last.Version {
			t.Errorf("version %d after %d", got.Version, last.Version)
		}
		last = got
	}
	if last.Status != api.StatusCompleted || last.Result == nil {
		t.Errorf("the stream ended on %s, want the completed task with its result", last.Status)
	}
	if events.ending != "the task has ended" || events.retry != "1000" {
		t.Errorf("the stream's last block: %q, retry %q; want it to say the task has ended, with retry 1000", events.ending, events.retry)
	}
}

func TestEventsResumeFromLastEventID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	b.deliver() // version 2, running
	res := b.openEvents(t.Context(), created.Links.Events, http.Header{"Last-Event-ID": {"2"}})
	events := newSSEReader(res)
	b.awaitWait(created.ID, 2) // nothing is sent for the version the client has
	done := b.finish(created.ID, "web-1")
	var last api.Task
	for {
		ev, ok := events.next()
		if !ok {
			break
		}
		got := taskEvent(t, ev)
		if got.Version <= 2 || got.Version <= last.Version {
			t.Errorf("sent version %d after %d to a client that had version 2", got.Version, max(last.Version, 2))
		}
		last = got
	}
	if last.Version != done.Version || last.Status != api.StatusCompleted {
		t.Errorf("the stream ended on %s v%d, want completed v%d", last.Status, last.Version, done.Version)
	}

	// A client that saw the end is told not to come back; one that did not gets the end.
	for _, tc := range []struct {
		path   string
		header http.Header
		want   int
	}{
		{created.Links.Events, http.Header{"Last-Event-ID": {strconv.FormatInt(done.Version, 10)}}, http.StatusNoContent},
		{created.Links.Events + "?lastEventId=" + strconv.FormatInt(done.Version, 10), nil, http.StatusNoContent},
		{created.Links.Events + "?lastEventId=1", nil, http.StatusOK},
	} {
		res := b.openEvents(t.Context(), tc.path, tc.header)
		if res.StatusCode != tc.want {
			t.Errorf("GET %s %v: status %d, want %d", tc.path, tc.header, res.StatusCode, tc.want)
		}
	}
}

func TestEventsStopWhenTheClientLeaves(t *testing.T) {
	t.Parallel()
	finished := make(chan struct{})
	b := setup(t, bundleOptions{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if strings.HasSuffix(r.URL.Path, "/events") {
				close(finished)
			}
		})
	}})
	created := b.submit("web-1")
	ctx, cancel := context.WithCancel(t.Context())
	res := b.openEvents(ctx, created.Links.Events, nil)
	events := newSSEReader(res)
	if _, ok := events.next(); !ok {
		t.Fatal("no first event")
	}
	b.awaitWait(created.ID, 1)
	cancel()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler kept streaming after the client left")
	}
}

func TestEventsHeadDoesNotStream(t *testing.T) {
	t.Parallel()
	finished := make(chan struct{})
	b := setup(t, bundleOptions{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.Method == http.MethodHead {
				close(finished)
			}
		})
	}})
	created := b.submit("web-1")
	r := b.do(req{method: "HEAD", path: created.Links.Events, token: aliceToken})
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != api.MediaEventStream {
		t.Errorf("HEAD: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler kept streaming for a HEAD")
	}
}

func TestEventsWithAnIDAheadOfTheTaskSendTheCurrentStateAndEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	finished := b.submit("web-1")
	done := b.finish(finished.ID, "web-1")
	running := b.submit("web-2")
	b.deliver()

	// A finished task: its final state, then the end of the stream, whatever the id says.
	for _, path := range []string{finished.Links.Events, finished.Links.Events + "?lastEventId=1000"} {
		header := http.Header{"Last-Event-ID": {"1000"}}
		if strings.Contains(path, "?") {
			header = nil
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		events := newSSEReader(b.openEvents(ctx, path, header))
		ev, ok := events.next()
		if !ok {
			t.Fatalf("%s: the stream ended without the final state", path)
		}
		if got := taskEvent(t, ev); got.Status != api.StatusCompleted || got.Version != done.Version {
			t.Errorf("%s: sent %s v%d, want completed v%d", path, got.Status, got.Version, done.Version)
		}
		if ev, ok := events.next(); ok {
			t.Errorf("%s: the stream went on after the final state with %+v", path, ev)
		}
		if ctx.Err() != nil {
			t.Errorf("%s: the stream was held open until the client gave up", path)
		}
		cancel()
	}

	// A running task: its current state at once, then its changes to the end.
	events := newSSEReader(b.openEvents(t.Context(), running.Links.Events, http.Header{"Last-Event-ID": {"1000"}}))
	ev, _ := events.next()
	if got := taskEvent(t, ev); got.Status != api.StatusRunning {
		t.Fatalf("first event %s, want the current, running state", got.Status)
	}
	b.report(running.ID, task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceSucceeded, ExitCode: new(0)})
	var last api.Task
	for {
		ev, ok := events.next()
		if !ok {
			break
		}
		last = taskEvent(t, ev)
	}
	if last.Status != api.StatusCompleted {
		t.Errorf("the stream ended on %s, want completed", last.Status)
	}
}

func TestStreamsAndLongPollsAreCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{maxStreams: 3, maxStreamsPerOwner: 2})
	a1, a2 := b.submit("web-1"), b.submit("web-2")
	bob := b.do(req{method: "POST", path: "/tasks", token: bobToken, body: submitBody("db-1")})
	bobTask := decode[api.Task](t, bob)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b.openEvents(ctx, a1.Links.Events, nil)
	b.awaitWait(a1.ID, 1)
	// A long-poll counts like a stream.
	go func() {
		hr := b.newRequest(ctx, req{method: "GET", path: "/tasks/" + a2.ID, token: aliceToken,
			header: http.Header{"Prefer": {"wait=20"}}})
		if res, err := b.srv.Client().Do(hr); err == nil {
			res.Body.Close()
		}
	}()
	b.awaitWait(a2.ID, 1)

	// Alice has two open: her third waits for nothing and is told to come back.
	r := b.do(req{method: "GET", path: a2.Links.Events, token: aliceToken})
	p := wantProblem(t, r, http.StatusServiceUnavailable, api.ProblemUnavailable)
	if r.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "too many") {
		t.Errorf("refused stream: Retry-After %q, detail %q", r.Header.Get("Retry-After"), p.Detail)
	}
	r = b.do(req{method: "GET", path: "/tasks/" + a2.ID, token: aliceToken, header: http.Header{"Prefer": {"wait=5"}}})
	wantProblem(t, r, http.StatusServiceUnavailable, api.ProblemUnavailable)
	// A plain GET never waits, so it is never refused.
	if r := b.do(req{method: "GET", path: "/tasks/" + a2.ID, token: aliceToken}); r.StatusCode != http.StatusOK {
		t.Errorf("plain GET: %d", r.StatusCode)
	}
	// Bob still has room of his own, until the total is reached.
	bobEvents, err := b.srv.Client().Do(b.newRequest(ctx, req{method: "GET", path: bobTask.Links.Events, token: bobToken}))
	if err != nil || bobEvents.StatusCode != http.StatusOK {
		t.Fatalf("bob's stream: %v %v", bobEvents, err)
	}
	defer bobEvents.Body.Close()
	r = b.do(req{method: "GET", path: bobTask.Links.Events, token: bobToken})
	wantProblem(t, r, http.StatusServiceUnavailable, api.ProblemUnavailable)

	// Closing a stream frees its place.
	cancel()
	clocktest.Eventually(t, 10*time.Second, func() error {
		release, ok := b.handler.streams.acquire("alice")
		if !ok {
			return errors.New("the closed stream still holds its place")
		}
		release()
		return nil
	})
}

// TestEventsEndBeforeTheRequestDeadline gives the request a deadline, as the Lambda adapter
// does for a streamed invocation: the stream keeps itself alive, then ends just before the
// deadline with a comment and the retry field, so the client reconnects with Last-Event-ID.
func TestEventsEndBeforeTheRequestDeadline(t *testing.T) {
	t.Parallel()
	deadline := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), streamEndMargin+300*time.Millisecond)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	b := setup(t, bundleOptions{keepAlive: 100 * time.Millisecond, wrap: deadline})
	created := b.submit("web-1")
	res := b.openEvents(t.Context(), created.Links.Events, nil)
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("the stream did not end cleanly: %v", err)
	}
	stream := string(body)
	if !strings.HasPrefix(stream, "retry: 1000\n\nid: 1\nevent: task\n") {
		t.Errorf("the stream starts %.60q; want the retry field, then the task", stream)
	}
	if !strings.Contains(stream, "\n\n: keep-alive\n\n") {
		t.Errorf("no keep-alive in %q", stream)
	}
	if want := "\n\n: the stream ends here; reconnect with Last-Event-ID\nretry: 1000\n\n"; !strings.HasSuffix(stream, want) {
		t.Errorf("the stream ends %q; want %q", stream[max(0, len(stream)-80):], want)
	}
}
