package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// tasksEvent checks ev is a tasks event and returns its page.
func tasksEvent(t *testing.T, ev sseEvent) api.TaskList {
	t.Helper()
	if ev.event != "tasks" || ev.id == "" {
		t.Fatalf("event %+v, want a tasks event with an id", ev)
	}
	var got api.TaskList
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	return got
}

// nextTasksEvent skips keep-alive comments and returns the next tasks event.
func nextTasksEvent(t *testing.T, s *sseReader) (api.TaskList, string) {
	t.Helper()
	for {
		ev, ok := s.next()
		if !ok {
			t.Fatal("the task list stream ended")
		}
		if ev.comment == "" {
			return tasksEvent(t, ev), ev.id
		}
	}
}

func ids(list api.TaskList) []string {
	var out []string
	for _, t := range list.Items {
		out = append(out, t.ID+":"+t.Status)
	}
	return out
}

func TestTaskListStreamSendsThePageWhenItChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{keepAlive: 50 * time.Millisecond})
	first := b.submit("web-1")
	b.do(req{method: "POST", path: "/tasks", token: bobToken, body: submitBody("db-1")})

	res := b.openEvents(t.Context(), "/tasks/events", nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != api.MediaEventStream {
		t.Fatalf("GET /tasks/events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	s := newSSEReader(res)
	page, id := nextTasksEvent(t, s)
	if got := ids(page); len(got) != 1 || got[0] != first.ID+":pending" {
		t.Fatalf("first event: %v, want alice's one pending task (bob's never)", got)
	}

	// A new task, then a status change, each arrive as the whole page, newest first.
	second := b.submit("web-2")
	page, _ = nextTasksEvent(t, s)
	if got := ids(page); len(got) != 2 || got[0] != second.ID+":pending" || got[1] != first.ID+":pending" {
		t.Fatalf("after a submit: %v, want the new task first", got)
	}
	b.finish(first.ID, "web-1")
	for {
		page, _ = nextTasksEvent(t, s)
		if page.Items[1].Status == api.StatusCompleted {
			break
		}
	}

	// Reconnecting with the first event's id: the page has changed since, so it comes again;
	// with the latest id, nothing comes until the next change.
	again := newSSEReader(b.openEvents(t.Context(), "/tasks/events", http.Header{"Last-Event-ID": {id}}))
	page, latest := nextTasksEvent(t, again)
	if len(page.Items) != 2 {
		t.Fatalf("reconnect with an old id: %v", ids(page))
	}
	quiet := newSSEReader(b.openEvents(t.Context(), "/tasks/events?lastEventId="+latest, nil))
	if ev, ok := quiet.next(); !ok || ev.comment != "keep-alive" {
		t.Fatalf("reconnect with the latest id: %+v, want only a keep-alive", ev)
	}
	if r := b.do(req{method: "DELETE", path: second.Links.Self, token: aliceToken}); r.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.StatusCode, r.body)
	}
	if page, _ := nextTasksEvent(t, quiet); page.Items[0].Status != api.StatusCancelling {
		t.Fatalf("after the second task was cancelled: %v", ids(page))
	}
}

func TestTaskListStreamFollowsItsQuery(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{keepAlive: 50 * time.Millisecond})
	a := b.submit("web-1")
	b.deliver()
	c := b.submit("web-2")
	s := newSSEReader(b.openEvents(t.Context(), "/tasks/events?status=running&limit=1", nil))
	if page, _ := nextTasksEvent(t, s); len(page.Items) != 1 || page.Items[0].ID != a.ID || page.Next != "" {
		t.Fatalf("running, limit 1: %v (next %q), want the one running task", ids(page), page.Next)
	}
	// The other task starts: it is newer, so it takes the page, and the first one goes to the
	// next page.
	b.deliver()
	if page, _ := nextTasksEvent(t, s); len(page.Items) != 1 || page.Items[0].ID != c.ID || page.Next == "" {
		t.Fatalf("after the newer task started: %v (next %q)", ids(page), page.Next)
	}
	// Both leave the filter: the page is empty.
	b.report(c.ID, task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceSucceeded, ExitCode: new(0)})
	b.report(a.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceFailed, ExitCode: new(1)})
	for {
		if page, _ := nextTasksEvent(t, s); len(page.Items) == 0 {
			break
		}
	}

	for _, bad := range []string{"?status=done", "?limit=0", "?cursor=abc"} {
		r := b.do(req{method: "GET", path: "/tasks/events" + bad, token: aliceToken})
		wantProblem(t, r, http.StatusBadRequest, api.ProblemMalformed)
	}
	wantProblem(t, b.do(req{method: "GET", path: "/tasks/events"}), http.StatusUnauthorized, api.ProblemUnauthorized)
	r := b.do(req{method: "DELETE", path: "/tasks/events", token: aliceToken})
	if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE /tasks/events: %d, Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
}

func TestTaskListStreamsAreCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{maxStreamsPerOwner: 1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if res := b.openEvents(ctx, "/tasks/events", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("first stream: %d", res.StatusCode)
	}
	r := b.do(req{method: "GET", path: "/tasks/events", token: aliceToken})
	if p := wantProblem(t, r, http.StatusServiceUnavailable, api.ProblemUnavailable); r.Header.Get("Retry-After") == "" {
		t.Errorf("refused stream without Retry-After: %+v", p)
	}
}
