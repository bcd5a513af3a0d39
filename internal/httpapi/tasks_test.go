package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestGetTaskConditional(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	r := b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", r.StatusCode, r.body)
	}
	if got := r.Header.Get("ETag"); got != `"1"` {
		t.Fatalf("ETag %q, want \"1\"", got)
	}
	if r.Header.Get("Cache-Control") != "no-cache" || r.Header.Get("Retry-After") != "1" {
		t.Errorf("Cache-Control %q, Retry-After %q", r.Header.Get("Cache-Control"), r.Header.Get("Retry-After"))
	}
	tests := []struct {
		inm  string
		want int
	}{
		{`"1"`, http.StatusNotModified},
		{`W/"1"`, http.StatusNotModified},
		{`"7", "1"`, http.StatusNotModified},
		{`*`, http.StatusNotModified},
		{`"2"`, http.StatusOK},
		{`1`, http.StatusOK},
	}
	for _, tc := range tests {
		r := b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken, header: http.Header{"If-None-Match": {tc.inm}}})
		if r.StatusCode != tc.want {
			t.Errorf("If-None-Match %s: status %d, want %d", tc.inm, r.StatusCode, tc.want)
		}
		if r.StatusCode == http.StatusNotModified && (len(r.body) != 0 || r.Header.Get("ETag") != `"1"`) {
			t.Errorf("304 with body %q and ETag %q", r.body, r.Header.Get("ETag"))
		}
	}

	b.finish(created.ID, "web-1")
	r = b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken, header: http.Header{"If-None-Match": {`"1"`}}})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("after changes: status %d", r.StatusCode)
	}
	done := decode[api.Task](t, r)
	if done.Status != api.StatusCompleted || r.Header.Get("ETag") != `"`+strconv.FormatInt(done.Version, 10)+`"` {
		t.Errorf("status %s, ETag %q, version %d", done.Status, r.Header.Get("ETag"), done.Version)
	}
	if r.Header.Get("Retry-After") != "" {
		t.Error("a terminal task still says Retry-After")
	}
	if done.Result == nil || !slices.Equal(done.Result.SucceededDevices, []string{"web-1"}) || done.Progress.Percentage != 100 {
		t.Errorf("result %+v, progress %+v", done.Result, done.Progress)
	}
	if done.StartedAt == nil || done.CompletedAt == nil {
		t.Errorf("startedAt %v completedAt %v", done.StartedAt, done.CompletedAt)
	}
}

func TestLongPollReturnsWhenTheTaskChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
	}{
		{"with If-None-Match", http.Header{"If-None-Match": {`"1"`}, "Prefer": {"wait=15"}}},
		{"without If-None-Match", http.Header{"Prefer": {"respond-async, wait=15"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			created := b.submit("web-1")
			type result struct {
				r       resp
				elapsed time.Duration
			}
			done := make(chan result, 1)
			go func() {
				start := time.Now()
				r := b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken, header: tc.header})
				done <- result{r, time.Since(start)}
			}()
			b.awaitWait(created.ID, 1)
			b.deliver() // dispatch: pending → running, version 2
			got := <-done
			if got.r.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", got.r.StatusCode, got.r.body)
			}
			if task := decode[api.Task](t, got.r); task.Status != api.StatusRunning || task.Version != 2 {
				t.Errorf("got %s at version %d, want running at 2", task.Status, task.Version)
			}
			if got.elapsed > 5*time.Second {
				t.Errorf("the long-poll took %v to see a change; it should answer at once", got.elapsed)
			}
			if pa := got.r.Header.Get("Preference-Applied"); pa != "wait=15" {
				t.Errorf("Preference-Applied %q", pa)
			}
		})
	}
}

func TestLongPollTimesOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	start := time.Now()
	r := b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken,
		header: http.Header{"If-None-Match": {`"1"`}, "Prefer": {"wait=1"}}})
	if r.StatusCode != http.StatusNotModified || r.Header.Get("Preference-Applied") != "wait=1" {
		t.Errorf("status %d, Preference-Applied %q; want 304 after the wait", r.StatusCode, r.Header.Get("Preference-Applied"))
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("answered after %v, before the wait of 1s was over", elapsed)
	}
	r = b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken, header: http.Header{"Prefer": {"wait=1"}}})
	if r.StatusCode != http.StatusOK {
		t.Errorf("without If-None-Match: status %d, want 200 with the unchanged task", r.StatusCode)
	}
}

func TestLongPollAnswersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	// A client whose version is old gets the current task without waiting.
	start := time.Now()
	r := b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken,
		header: http.Header{"If-None-Match": {`"0"`}, "Prefer": {"wait=20"}}})
	if r.StatusCode != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Errorf("stale If-None-Match: status %d after %v", r.StatusCode, time.Since(start))
	}
	// A finished task never changes again, so nobody waits on it; the wait is capped.
	b.finish(created.ID, "web-1")
	start = time.Now()
	r = b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken, header: http.Header{"Prefer": {"wait=600"}}})
	if r.StatusCode != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Errorf("terminal task: status %d after %v", r.StatusCode, time.Since(start))
	}
	if pa := r.Header.Get("Preference-Applied"); pa != "wait=20" {
		t.Errorf("Preference-Applied %q, want the capped wait=20", pa)
	}
}

func TestResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1", "web-2", "web-3")
	p := wantProblem(t, b.do(req{method: "GET", path: "/tasks/" + created.ID + "/result", token: aliceToken}),
		http.StatusConflict, api.ProblemNotFinished)
	if p.TaskStatus != api.StatusPending {
		t.Errorf("taskStatus %q, want pending", p.TaskStatus)
	}
	b.deliver()
	r := b.do(req{method: "GET", path: "/tasks/" + created.ID + "/result", token: aliceToken})
	if p := wantProblem(t, r, http.StatusConflict, api.ProblemNotFinished); p.TaskStatus != api.StatusRunning || r.Header.Get("Retry-After") != "1" {
		t.Errorf("taskStatus %q, Retry-After %q", p.TaskStatus, r.Header.Get("Retry-After"))
	}
	b.report(created.ID,
		task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)},
		task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceFailed, ExitCode: new(3)},
		task.DeviceUpdate{DeviceID: "web-3", Status: task.DeviceUndeliverable, Reason: "offline"})
	r = b.do(req{method: "GET", path: "/tasks/" + created.ID + "/result", token: aliceToken})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", r.StatusCode, r.body)
	}
	res := decode[api.Result](t, r)
	devices := created.Links.Devices
	want := api.Result{Status: api.StatusCompleted, SucceededDevices: []string{"web-1"}, FailedDevices: []string{"web-2", "web-3"},
		CancelledDevices: []string{}, Devices: api.DeviceCounts{Total: 3, Succeeded: 1, Failed: 1, Undeliverable: 1},
		Links: api.ResultLinks{Succeeded: devices + "?status=succeeded", Failed: devices + "?status=failed,timed_out,undeliverable",
			Output: devices + "/{deviceId}/output"}}
	if res.Status != want.Status || !slices.Equal(res.SucceededDevices, want.SucceededDevices) ||
		!slices.Equal(res.FailedDevices, want.FailedDevices) || res.CancelledDevices == nil || len(res.CancelledDevices) != 0 ||
		res.Devices != want.Devices || res.Links != want.Links || res.Truncated {
		t.Errorf("result\n%+v, want\n%+v", res, want)
	}
	// The failed link lists exactly the failed devices.
	list := decode[api.DeviceList](t, b.do(req{method: "GET", path: res.Links.Failed, token: aliceToken}))
	if ids := deviceIDs(list); !slices.Equal(ids, []string{"web-2", "web-3"}) {
		t.Errorf("failed link lists %v", ids)
	}
}

func deviceIDs(l api.DeviceList) []string {
	var ids []string
	for _, d := range l.Items {
		ids = append(ids, d.ID)
	}
	return ids
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)

	pending := b.submit("web-1")
	for range 2 { // idempotent
		r := b.do(req{method: "DELETE", path: "/tasks/" + pending.ID, token: aliceToken})
		if got := decode[api.Task](t, r); r.StatusCode != http.StatusOK || got.Status != api.StatusCancelled || got.Result == nil {
			t.Fatalf("cancel pending: %d %s, result %v", r.StatusCode, got.Status, got.Result)
		}
	}

	running := b.submit("web-1", "web-2")
	b.deliver()
	for range 2 {
		r := b.do(req{method: "DELETE", path: "/tasks/" + running.ID, token: aliceToken})
		got := decode[api.Task](t, r)
		if r.StatusCode != http.StatusAccepted || got.Status != api.StatusCancelling {
			t.Fatalf("cancel running: %d %s", r.StatusCode, got.Status)
		}
		if r.Header.Get("Location") != running.Links.Self || r.Header.Get("Retry-After") == "" {
			t.Errorf("Location %q Retry-After %q", r.Header.Get("Location"), r.Header.Get("Retry-After"))
		}
	}
	b.deliver() // the cancel messages reach the runner
	if b.runner.cancelled.Load() == 0 {
		t.Error("the runner was never asked to cancel")
	}
	b.report(running.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceCancelled},
		task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceSucceeded, ExitCode: new(0)})
	r := b.do(req{method: "DELETE", path: "/tasks/" + running.ID, token: aliceToken})
	if got := decode[api.Task](t, r); r.StatusCode != http.StatusOK || got.Status != api.StatusCancelled {
		t.Errorf("cancel after the devices stopped: %d %s", r.StatusCode, got.Status)
	}

	done := b.submit("web-1")
	b.finish(done.ID, "web-1")
	p := wantProblem(t, b.do(req{method: "DELETE", path: "/tasks/" + done.ID, token: aliceToken}), http.StatusConflict, api.ProblemConflict)
	if p.TaskStatus != api.StatusCompleted {
		t.Errorf("taskStatus %q, want completed", p.TaskStatus)
	}
}

func TestListTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for range 3 {
		ids = append(ids, b.submit("web-1").ID)
	}
	b.finish(ids[1], "web-1")
	b.submitAs(bobToken)

	var seen []string
	next := "/tasks?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		r := b.do(req{method: "GET", path: next, token: aliceToken})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, r.StatusCode, r.body)
		}
		list := decode[api.TaskList](t, r)
		for _, item := range list.Items {
			seen = append(seen, item.ID)
		}
		if list.Next != "" {
			if link := r.Header.Get("Link"); link != "<"+list.Next+`>; rel="next"` {
				t.Errorf("Link %q for next %q", link, list.Next)
			}
			if !hasQuery(list.Next, "limit", "2") {
				t.Errorf("next %q lost the limit", list.Next)
			}
		} else if r.Header.Get("Link") != "" {
			t.Error("the last page has a Link")
		}
		next = list.Next
	}
	if want := []string{ids[2], ids[1], ids[0]}; !slices.Equal(seen, want) {
		t.Errorf("listed %v, want newest first %v (and none of bob's)", seen, want)
	}

	list := decode[api.TaskList](t, b.do(req{method: "GET", path: "/tasks?status=completed", token: aliceToken}))
	if len(list.Items) != 1 || list.Items[0].ID != ids[1] {
		t.Errorf("status=completed listed %+v", list.Items)
	}
}

func (b *testBundle) submitAs(token string) api.Task {
	b.t.Helper()
	r := b.do(req{method: "POST", path: "/tasks", token: token, body: submitBody("web-1")})
	if r.StatusCode != http.StatusAccepted {
		b.t.Fatalf("submit: %d %s", r.StatusCode, r.body)
	}
	return decode[api.Task](b.t, r)
}

func TestBadQueries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	devices := "/tasks/" + created.ID + "/devices"
	tests := []struct {
		path     string
		pointers []string
	}{
		{"/tasks?status=done", []string{"/status"}},
		{"/tasks?status=running&status=pending", []string{"/status"}},
		{"/tasks?limit=0", []string{"/limit"}},
		{"/tasks?limit=1001", []string{"/limit"}},
		{"/tasks?limit=ten", []string{"/limit"}},
		{"/tasks?limit=-1&status=nope", []string{"/status", "/limit"}},
		{"/tasks?cursor=", []string{"/cursor"}},
		{"/tasks?cursor=not+a+cursor", []string{"/cursor"}},
		{"/tasks?cursor=notacursor", []string{"/cursor"}}, // well formed, but the store cannot read it
		{devices + "?status=succeeded,bogus", []string{"/status"}},
		{devices + "?status=", []string{"/status"}},
		{devices + "?limit=1.5", []string{"/limit"}},
		{devices + "?cursor=notacursor", []string{"/cursor"}},
		{devices + "/web-1/output?stream=both", []string{"/stream"}},
		{"/tasks/" + created.ID + "/events?lastEventId=x", []string{"/lastEventId"}},
	}
	for _, tc := range tests {
		r := b.do(req{method: "GET", path: tc.path, token: aliceToken})
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: status %d, want 400: %s", tc.path, r.StatusCode, r.body)
			continue
		}
		p := wantProblem(t, r, http.StatusBadRequest, api.ProblemMalformed)
		var pointers []string
		for _, e := range p.Errors {
			pointers = append(pointers, e.Pointer)
		}
		if !slices.Equal(pointers, tc.pointers) {
			t.Errorf("GET %s: pointers %q, want %q", tc.path, pointers, tc.pointers)
		}
	}
}

func TestDevicesAndOutput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1", "web-2", "web-3")
	b.deliver()
	b.report(created.ID, task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceFailed, ExitCode: new(2),
		Stdout: "partial", StdoutTruncated: true, Stderr: "boom"})
	b.output.put(created.ID, "web-2", "stdout", "partial and the rest")
	b.output.put(created.ID, "web-2", "stderr", "boom")

	var seen []api.Device
	next := created.Links.Devices + "?limit=2&status=pending,failed"
	for next != "" {
		r := b.do(req{method: "GET", path: next, token: aliceToken})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, r.StatusCode, r.body)
		}
		list := decode[api.DeviceList](t, r)
		seen = append(seen, list.Items...)
		if list.Next != "" && !hasQuery(list.Next, "status", "pending,failed") {
			t.Errorf("next %q lost the status filter", list.Next)
		}
		next = list.Next
	}
	if ids := deviceIDs(api.DeviceList{Items: seen}); !slices.Equal(ids, []string{"web-1", "web-2", "web-3"}) {
		t.Fatalf("listed %v", ids)
	}
	failed := seen[1]
	if failed.Status != api.DeviceFailed || failed.ExitCode == nil || *failed.ExitCode != 2 || !failed.StdoutTruncated ||
		failed.Links.Output != created.Links.Devices+"/web-2/output" {
		t.Errorf("device %+v", failed)
	}

	r := b.do(req{method: "GET", path: created.Links.Devices + "/web-2", token: aliceToken})
	if got := decode[api.Device](t, r); r.StatusCode != http.StatusOK || got.ID != "web-2" || got.Stderr != "boom" {
		t.Errorf("device: %d %+v", r.StatusCode, got)
	}
	wantProblem(t, b.do(req{method: "GET", path: created.Links.Devices + "/web-9", token: aliceToken}), http.StatusNotFound, api.ProblemNotFound)

	for stream, want := range map[string]string{"": "partial and the rest", "?stream=stdout": "partial and the rest", "?stream=stderr": "boom"} {
		r := b.do(req{method: "GET", path: failed.Links.Output + stream, token: aliceToken})
		if r.StatusCode != http.StatusOK || string(r.body) != want || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("output%s: %d %q %q", stream, r.StatusCode, r.Header.Get("Content-Type"), r.body)
		}
	}
	// A device that has not started has no output, and no link to one.
	if pending := seen[0]; pending.Status != api.DevicePending || pending.Links.Output != "" {
		t.Errorf("pending device %+v has an output link", pending)
	}
	wantProblem(t, b.do(req{method: "GET", path: created.Links.Devices + "/web-1/output", token: aliceToken}), http.StatusNotFound, api.ProblemNotFound)

	// An output too large to answer with is a 303 to where it lives.
	const big = "https://out.s3.amazonaws.com/fleetrun/big?X-Amz-Signature=abc"
	b.report(created.ID, task.DeviceUpdate{DeviceID: "web-3", Status: task.DeviceSucceeded, ExitCode: new(0)})
	b.output.redirect(created.ID, "web-3", "stdout", big)
	r = b.do(req{method: "GET", path: created.Links.Devices + "/web-3/output", token: aliceToken})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != big || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("large output: %d Location %q Cache-Control %q", r.StatusCode, r.Header.Get("Location"), r.Header.Get("Cache-Control"))
	}

	// Without an output store, no link leads to output, and the route says why.
	noOutput := setup(t, bundleOptions{noOutput: true})
	other := noOutput.submit("web-1")
	noOutput.deliver()
	noOutput.report(other.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)})
	d := decode[api.Device](t, noOutput.do(req{method: "GET", path: other.Links.Devices + "/web-1", token: aliceToken}))
	res := decode[api.Result](t, noOutput.do(req{method: "GET", path: other.Links.Result, token: aliceToken}))
	if d.Status != api.DeviceSucceeded || d.Links.Output != "" || res.Status != api.StatusCompleted || res.Links.Output != "" {
		t.Errorf("without an output store: device %+v, result links %+v; want no output links", d, res.Links)
	}
	wantProblem(t, noOutput.do(req{method: "GET", path: other.Links.Devices + "/web-1/output", token: aliceToken}), http.StatusNotFound, api.ProblemNotFound)

	// Where another server answers the output route (StatusFunction beside OutputFunction),
	// the links lead there all the same, and only to devices that started.
	elsewhere := setup(t, bundleOptions{noOutput: true, outputLinks: true})
	linked := elsewhere.submit("web-1", "web-2")
	elsewhere.deliver()
	elsewhere.report(linked.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)},
		task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceFailed, ExitCode: new(1)})
	d = decode[api.Device](t, elsewhere.do(req{method: "GET", path: linked.Links.Devices + "/web-1", token: aliceToken}))
	res = decode[api.Result](t, elsewhere.do(req{method: "GET", path: linked.Links.Result, token: aliceToken}))
	if d.Links.Output != linked.Links.Devices+"/web-1/output" || res.Links.Output != linked.Links.Devices+"/{deviceId}/output" {
		t.Errorf("with output served elsewhere: device links %+v, result links %+v; want the output links", d.Links, res.Links)
	}
}

// TestOtherOwnersTasksAreNotFound checks that bob cannot tell alice's task from a missing one,
// on every route.
func TestOtherOwnersTasksAreNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.submit("web-1")
	b.output.put(created.ID, "web-1", "stdout", "secret")
	for _, route := range []struct{ method, path string }{
		{"GET", "/tasks/%s"},
		{"DELETE", "/tasks/%s"},
		{"GET", "/tasks/%s/result"},
		{"GET", "/tasks/%s/events"},
		{"GET", "/tasks/%s/devices"},
		{"GET", "/tasks/%s/devices/web-1"},
		{"GET", "/tasks/%s/devices/web-1/output"},
	} {
		const missingID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
		theirs := wantProblem(t, b.do(req{method: route.method, path: fmt.Sprintf(route.path, created.ID), token: bobToken}), http.StatusNotFound, api.ProblemNotFound)
		missing := wantProblem(t, b.do(req{method: route.method, path: fmt.Sprintf(route.path, missingID), token: bobToken}), http.StatusNotFound, api.ProblemNotFound)
		if theirs.Title != missing.Title || strings.ReplaceAll(theirs.Detail, created.ID, "ID") != strings.ReplaceAll(missing.Detail, missingID, "ID") {
			t.Errorf("%s %s: another owner's task answers %+v, a missing one %+v", route.method, route.path, theirs, missing)
		}
	}
	if got := decode[api.Task](t, b.do(req{method: "GET", path: "/tasks/" + created.ID, token: aliceToken})); got.Status != api.StatusPending {
		t.Errorf("bob's DELETE changed alice's task to %s", got.Status)
	}
}

// hasQuery reports whether link's query has name=value.
func hasQuery(link, name, value string) bool {
	u, err := url.Parse(link)
	return err == nil && u.Query().Get(name) == value
}

// TestRetryAfterAndEstimateOnAPolledRunner checks, with a runner the executor polls (SSM),
// that Retry-After follows the poll cadence instead of a flat second, and that
// estimatedCompletionAt appears once a device has finished and extrapolates from it.
func TestRetryAfterAndEstimateOnAPolledRunner(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{polled: true})
	created := b.submit("web-1", "web-2", "web-3", "web-4")
	if created.EstimatedCompletionAt != nil {
		t.Errorf("a pending task has an estimate: %v", created.EstimatedCompletionAt)
	}
	b.deliver()
	retryAfter := func() int {
		t.Helper()
		r := b.do(req{method: "GET", path: created.Links.Self, token: aliceToken})
		n, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET: %d Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
		}
		return n
	}
	// The first poll comes 5 s after the dispatch; the clock moves a second per read.
	if n := retryAfter(); n < 1 || n > 5 {
		t.Errorf("just after the dispatch Retry-After = %d, want the seconds to the first poll (at most 5)", n)
	}
	// 80 s in, the polls are 40 s apart and the next is at 135 s.
	b.clock.Advance(75 * time.Second)
	if n := retryAfter(); n < 45 || n > 55 {
		t.Errorf("80 s after the dispatch Retry-After = %d, want about 55", n)
	}

	got := decode[api.Task](t, b.do(req{method: "GET", path: created.Links.Self, token: aliceToken}))
	if got.EstimatedCompletionAt != nil {
		t.Errorf("no device finished, but estimatedCompletionAt = %v", got.EstimatedCompletionAt)
	}
	b.report(created.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)})
	got = decode[api.Task](t, b.do(req{method: "GET", path: created.Links.Self, token: aliceToken}))
	if got.EstimatedCompletionAt == nil || got.StartedAt == nil {
		t.Fatalf("a device finished, but estimatedCompletionAt = %v", got.EstimatedCompletionAt)
	}
	// One device of four after this long: the rest take three times as long again.
	took := got.UpdatedAt.Sub(*got.StartedAt)
	if want := got.StartedAt.Add(4 * took); !got.EstimatedCompletionAt.Equal(want) {
		t.Errorf("estimatedCompletionAt = %v, want %v (start + 4 × %v)", got.EstimatedCompletionAt, want, took)
	}
}

// TestAdministratorsSeeEveryTask checks that an administrator reads and cancels another
// owner's task, while another caller still finds nothing there.
func TestAdministratorsSeeEveryTask(t *testing.T) {
	t.Parallel()
	const carol = "carol-secret"
	b := setup(t, bundleOptions{adminToken: carol})
	created := b.submit("web-1")
	b.deliver()
	if r := b.do(req{method: "GET", path: created.Links.Self, token: carol}); r.StatusCode != http.StatusOK {
		t.Errorf("the administrator's GET: %d %s", r.StatusCode, r.body)
	}
	wantProblem(t, b.do(req{method: "GET", path: created.Links.Self, token: bobToken}), http.StatusNotFound, api.ProblemNotFound)
	wantProblem(t, b.do(req{method: "DELETE", path: created.Links.Self, token: bobToken}), http.StatusNotFound, api.ProblemNotFound)
	r := b.do(req{method: "DELETE", path: created.Links.Self, token: carol})
	if got := decode[api.Task](t, r); r.StatusCode != http.StatusAccepted || got.Status != api.StatusCancelling {
		t.Errorf("the administrator's cancel: %d %s", r.StatusCode, got.Status)
	}
	// An administrator's own list holds its own tasks only.
	if list := decode[api.TaskList](t, b.do(req{method: "GET", path: "/tasks", token: carol})); len(list.Items) != 0 {
		t.Errorf("the administrator's list = %d tasks, want none of its own", len(list.Items))
	}
}
