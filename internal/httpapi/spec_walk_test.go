package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestOpenAPIContract walks every route of the API through its answers, and checks each
// request and response against openapi.yaml: statuses, headers, and bodies, problems included.
// It ends by checking that every documented response was seen.
func TestOpenAPIContract(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{maxBodyBytes: 8192, keepAlive: 100 * time.Millisecond, bodyTimeout: 500 * time.Millisecond})
	s := newSpecWalker(t, b)
	alice := func(method, path string) req { return req{method: method, path: path, token: aliceToken} }
	with := func(r req, h ...string) req {
		r.header = http.Header{}
		for i := 0; i < len(h); i += 2 {
			r.header.Add(h[i], h[i+1])
		}
		return r
	}
	post := func(body string, h ...string) req {
		r := with(alice("POST", "/tasks"), h...)
		r.body = body
		return r
	}
	const missingID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

	s.step("health", req{method: "GET", path: "/healthz"}, 200, specValid)

	// Submit, and every way a submit is refused.
	body := `{"deviceIds":["web-1","web-2"],"scriptUrl":"scripts/patch.sh","args":["--dry-run"],` +
		`"timeoutSeconds":600,"maxConcurrency":"10%","maxErrors":"1"}`
	r := s.step("submit", post(body, "Idempotency-Key", "walk-1", "X-Request-Id", "walk.submit"), 202, specValid)
	tk := decode[api.Task](t, r)
	if r.Header.Get("X-Request-Id") != "walk.submit" {
		t.Errorf("request id %q not kept", r.Header.Get("X-Request-Id"))
	}
	r = s.step("replay", post(strings.ReplaceAll(body, ",", ", "), "Idempotency-Key", "walk-1"), 202, specValid)
	if r.Header.Get("Idempotent-Replayed") != "true" || decode[api.Task](t, r).ID != tk.ID {
		t.Errorf("replay: Idempotent-Replayed %q", r.Header.Get("Idempotent-Replayed"))
	}
	s.step("key reused", post(submitBody("web-9"), "Idempotency-Key", "walk-1"), 422, specValid)
	s.step("invalid fields", post(`{"deviceIds":["web 1","web-2","web-2"],"scriptUrl":"scripts/x","timeoutSeconds":0}`), 422, specInvalid)
	s.step("wrong types", post(`{"deviceIds":[1],"scriptUrl":"scripts/x","extra":true}`), 422, specInvalid)
	r = s.step("submit with targets", post(`{"targets":[{"key":"tag:Env","values":["prod"]},{"key":"tag:Role","values":["web","db"]}],"scriptUrl":"scripts/patch.sh"}`), 202, specValid)
	if got := decode[api.Task](t, r); got.Request.DeviceCount != 2 || len(got.Request.Targets) != 2 {
		t.Errorf("submit with targets: %+v", got.Request)
	}
	s.step("targets that match nothing", post(`{"targets":[{"key":"tag:Env","values":["dev"]}],"scriptUrl":"scripts/patch.sh"}`), 422, specValid)
	s.step("targets and devices", post(`{"deviceIds":["web-1"],"targets":[{"key":"Env","values":[]}],"scriptUrl":"scripts/patch.sh"}`), 422, specInvalid)
	plain := post(submitBody("web-1"))
	plain.ctype = "text/plain"
	s.step("unsupported media type", plain, 415, specInvalid)
	s.step("too large", post(submitBody(strings.Repeat("d", 120)+"-1", strings.Repeat("d", 120)+"-2")+strings.Repeat(" ", 8192)), 413, specAny)
	s.step("not JSON", post(`{"deviceIds":`), 400, specInvalid)
	slow := post(submitBody("web-1"))
	slow.stall = true
	s.step("body too slow", slow, 408, specValid)
	s.step("bad idempotency key", post(submitBody("web-1"), "Idempotency-Key", strings.Repeat("k", 256)), 400, specInvalid)
	b.queue.fail.Store(true)
	r = s.step("queue down", post(submitBody("web-1")), 503, specValid)
	b.queue.fail.Store(false)
	if p := decode[api.Problem](t, r); p.Type != api.ProblemUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("queue down: problem %q, Retry-After %q; want %s with a Retry-After", p.Type, r.Header.Get("Retry-After"), api.ProblemUnavailable)
	}

	// Read it, conditionally, and long-poll it.
	s.step("get", alice("GET", tk.Links.Self), 200, specValid)
	s.step("not modified", with(alice("GET", tk.Links.Self), "If-None-Match", `"1"`), 304, specValid)
	s.step("long-poll times out", with(alice("GET", tk.Links.Self), "If-None-Match", `"1"`, "Prefer", "wait=1"), 304, specValid)
	changed := s.changeWhenWaiting(tk.ID, 1, func() error {
		for _, m := range b.queue.take() {
			if err := b.engine.Handle(context.Background(), m); err != nil {
				return err
			}
		}
		return nil
	})
	start := time.Now()
	r = s.step("long-poll sees the change", with(alice("GET", tk.Links.Self), "If-None-Match", `"1"`, "Prefer", "wait=15"), 200, specValid)
	if err := changed(); err != nil {
		t.Fatal(err)
	}
	if got := decode[api.Task](t, r); got.Status != api.StatusRunning || time.Since(start) > 5*time.Second {
		t.Errorf("long-poll answered %s after %v", got.Status, time.Since(start))
	}
	s.step("result before the end", alice("GET", tk.Links.Result), 409, specValid)

	// Devices, while running.
	r = s.step("devices page", alice("GET", tk.Links.Devices+"?limit=1"), 200, specValid)
	next := decode[api.DeviceList](t, r).Next
	if next == "" || !strings.HasPrefix(r.Header.Get("Link"), "<"+next+">") {
		t.Fatalf("no next page (Link %q)", r.Header.Get("Link"))
	}
	s.step("devices next page", alice("GET", next), 200, specValid)
	s.step("devices by status", alice("GET", tk.Links.Devices+"?status=pending,running"), 200, specValid)
	r = s.step("device statuses", alice("GET", tk.Links.Devices+"?fields=status&limit=1"), 200, specValid)
	if got := string(r.body); !strings.Contains(got, `"items":[{"id":"web-1","status":"pending"}]`) || !strings.Contains(got, "fields=id,status") {
		t.Errorf("device statuses: %s", got)
	}
	s.step("devices bad fields", alice("GET", tk.Links.Devices+"?fields=status,secrets"), 400, specAny)
	s.step("devices bad status", alice("GET", tk.Links.Devices+"?status=bogus"), 400, specInvalid)
	s.step("devices bad limit", alice("GET", tk.Links.Devices+"?limit=0"), 400, specInvalid)
	s.step("devices unreadable cursor", alice("GET", tk.Links.Devices+"?cursor=notacursor"), 400, specAny)

	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0), Stdout: "patched"},
		task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceFailed, ExitCode: new(1), Stderr: "no space left"})
	b.output.put(tk.ID, "web-1", "stdout", "patched\nall of it\n")
	b.output.put(tk.ID, "web-1", "stderr", "")
	device := tk.Links.Devices + "/web-1"
	s.step("device", alice("GET", device), 200, specValid)
	s.step("output", alice("GET", device+"/output"), 200, specValid)
	s.step("output stderr", alice("GET", device+"/output?stream=stderr"), 200, specValid)
	s.step("output bad stream", alice("GET", device+"/output?stream=stdin"), 400, specInvalid)
	s.step("output followed", alice("GET", device+"/output?follow=true"), 200, specValid)
	b.output.redirect(tk.ID, "web-2", "stdout", "https://bucket.s3.amazonaws.com/big?X-Amz-Signature=abc")
	s.step("output too large to answer with", alice("GET", tk.Links.Devices+"/web-2/output"), 303, specValid)
	s.step("result", alice("GET", tk.Links.Result), 200, specValid)

	// Webhooks: a task with notify, its deliveries, page by page.
	hooked := decode[api.Task](t, s.step("submit with notify", post(`{"deviceIds":["web-1"],"scriptUrl":"scripts/x",`+
		`"notify":{"url":"https://hooks.example/fleet","events":["task.started","task.finished"]}}`), 202, specValid))
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for n, status := range []int{503, 0, 204} {
		d := task.Delivery{TaskID: hooked.ID, EventID: hooked.ID + "_started", Type: task.WebhookTaskStarted, EventAt: at,
			Attempt: n + 1, At: at.Add(time.Duration(n) * time.Minute), StatusCode: status, Outcome: task.DeliveryRetrying,
			NextAttemptAt: new(at.Add(time.Duration(n+1) * time.Minute))}
		switch status {
		case 0:
			d.Error = "the receiver did not answer within 10s"
		case 204:
			d.Outcome, d.NextAttemptAt = task.DeliveryDelivered, nil
		}
		if err := b.store.RecordDelivery(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	r = s.step("deliveries page", alice("GET", hooked.Links.Deliveries+"?limit=2"), 200, specValid)
	s.step("deliveries next page", alice("GET", decode[api.DeliveryList](t, r).Next), 200, specValid)
	s.step("deliveries bad limit", alice("GET", hooked.Links.Deliveries+"?limit=0"), 400, specInvalid)
	// The body of the task's webhooks is the documented WebhookEvent.
	for _, stored := range b.storedTasks("alice") {
		if stored.ID == hooked.ID {
			payload, err := WebhookPayload(true)(stored, task.WebhookTaskFinished, b.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			s.visit("webhook payload", "WebhookEvent", payload)
		}
	}
	s.step("notify refused", post(`{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"http://169.254.169.254/"}}`), 422, specValid)

	// Events: a finished task's stream, one that has nothing new, and one followed live.
	done := decode[api.Task](t, s.step("get finished", alice("GET", tk.Links.Self), 200, specValid))
	if done.Status != api.StatusCompleted {
		t.Fatalf("task is %s", done.Status)
	}
	s.step("events of a finished task", alice("GET", tk.Links.Events), 200, specValid)
	s.step("events already seen", with(alice("GET", tk.Links.Events), "Last-Event-ID", strconv.FormatInt(done.Version, 10)), 204, specValid)
	s.step("events bad last id", alice("GET", tk.Links.Events+"?lastEventId=last"), 400, specInvalid)
	live := b.submit("db-1")
	r = s.step("events followed live", alice("GET", live.Links.Events), 200, specValid, func() {
		b.awaitWait(live.ID, 1)
		b.finish(live.ID, "db-1")
	})
	if n := strings.Count(string(r.body), "event: task"); n < 3 {
		t.Errorf("the live stream sent %d events, want pending, running and completed:\n%s", n, r.body)
	}

	// Cancel: at once, by stopping devices, and refused.
	pending := b.submit("web-1")
	s.step("cancel pending", alice("DELETE", pending.Links.Self), 200, specValid)
	running := b.submit("web-1")
	b.deliver()
	s.step("cancel running", alice("DELETE", running.Links.Self), 202, specValid)
	s.step("cancel finished", alice("DELETE", tk.Links.Self), 409, specValid)

	// Cancel one device: pending (at once), running (being stopped), ended, and of a finished task.
	several := b.submit("web-1", "web-2", "web-3")
	b.deliver()
	b.report(several.ID, task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceRunning},
		task.DeviceUpdate{DeviceID: "web-3", Status: task.DeviceSucceeded, ExitCode: new(0)})
	s.step("cancel pending device", alice("DELETE", several.Links.Devices+"/web-1"), 200, specValid)
	s.step("cancel cancelled device", alice("DELETE", several.Links.Devices+"/web-1"), 200, specValid)
	r = s.step("cancel running device", alice("DELETE", several.Links.Devices+"/web-2"), 202, specValid)
	if d := decode[api.Device](t, r); d.Status != api.DeviceRunning || d.CancelRequestedAt == nil || r.Header.Get("Location") != d.Links.Self {
		t.Errorf("cancel running device: %+v, Location %q", d, r.Header.Get("Location"))
	}
	r = s.step("cancel ended device", alice("DELETE", several.Links.Devices+"/web-3"), 409, specValid)
	if p := decode[api.Problem](t, r); p.DeviceStatus != api.DeviceSucceeded || p.TaskStatus != api.StatusRunning {
		t.Errorf("cancel ended device: %+v", p)
	}
	s.step("cancel device of a finished task", alice("DELETE", tk.Links.Devices+"/web-1"), 409, specValid)

	// The inventory, filtered by tag, page by page.
	r = s.step("inventory", alice("GET", "/devices?tag:Role=web,db&limit=2"), 200, specValid)
	inv := decode[api.InventoryList](t, r)
	if len(inv.Items) != 2 || inv.Next == "" || inv.Items[0].Tags["Env"] != "prod" {
		t.Fatalf("inventory page: %s", r.body)
	}
	if r = s.step("inventory next page", alice("GET", inv.Next), 200, specValid); len(decode[api.InventoryList](t, r).Items) != 1 {
		t.Errorf("inventory next page: %s", r.body)
	}
	s.step("inventory bad filter", alice("GET", "/devices?env=prod"), 400, specAny)
	s.step("unauthorized inventory", req{method: "GET", path: "/devices"}, 401, specInvalid)

	// Relaunch the finished task's failed device, and every way a relaunch is refused.
	relaunchOf := func(id, body string, h ...string) req {
		r := with(alice("POST", "/tasks/"+id+"/relaunch"), h...)
		r.body = body
		return r
	}
	r = s.step("relaunch", relaunchOf(tk.ID, `{"devices":"failed","maxErrors":"0"}`, "Idempotency-Key", "walk-relaunch"), 202, specValid)
	again := decode[api.Task](t, r)
	if again.RelaunchOf == nil || again.RelaunchOf.ID != tk.ID || again.Request.DeviceCount != 1 || r.Header.Get("Location") != again.Links.Self {
		t.Errorf("relaunch: %+v, Location %q", again, r.Header.Get("Location"))
	}
	r = s.step("relaunch replay", relaunchOf(tk.ID, `{"maxErrors":"0", "devices":"failed"}`, "Idempotency-Key", "walk-relaunch"), 202, specValid)
	if decode[api.Task](t, r).ID != again.ID || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("relaunch replay: Idempotent-Replayed %q", r.Header.Get("Idempotent-Replayed"))
	}
	r = s.step("relaunches", alice("GET", done.Links.Relaunches), 200, specValid)
	if list := decode[api.TaskList](t, r); len(list.Items) != 1 || list.Items[0].ID != again.ID {
		t.Errorf("relaunches of %s: %+v", tk.ID, list)
	}
	s.step("relaunch of an unfinished task", relaunchOf(again.ID, `{"devices":"all"}`), 409, specValid)
	s.step("relaunch bad fields", relaunchOf(tk.ID, `{"devices":["web-1","web-7"],"timeoutSeconds":0}`), 422, specInvalid)
	s.step("relaunch wrong types", relaunchOf(tk.ID, `{"devices":7,"extra":1}`), 422, specInvalid)
	s.step("relaunch not JSON", relaunchOf(tk.ID, `{"devices":`), 400, specInvalid)
	textRelaunch := relaunchOf(tk.ID, `{"devices":"all"}`)
	textRelaunch.ctype = "text/plain"
	s.step("relaunch unsupported media type", textRelaunch, 415, specInvalid)
	s.step("relaunch too large", relaunchOf(tk.ID, `{"devices":"all"}`+strings.Repeat(" ", 8192)), 413, specAny)

	// Listing.
	r = s.step("list", alice("GET", "/tasks?limit=2"), 200, specValid)
	list := decode[api.TaskList](t, r)
	if list.Next == "" || r.Header.Get("Link") != "<"+list.Next+`>; rel="next"` {
		t.Fatalf("list: next %q, Link %q", list.Next, r.Header.Get("Link"))
	}
	s.step("list next page", alice("GET", list.Next), 200, specValid)
	s.step("list by status", alice("GET", "/tasks?status=completed"), 200, specValid)
	s.step("list bad limit", alice("GET", "/tasks?limit=5000"), 400, specInvalid)
	s.step("list bad status", alice("GET", "/tasks?status=done"), 400, specInvalid)
	s.step("list bad relaunchOf", alice("GET", "/tasks?relaunchOf="), 400, specInvalid)
	s.step("list unreadable cursor", alice("GET", "/tasks?cursor=notacursor"), 400, specAny)
	stream := alice("GET", "/tasks/events?status=completed&limit=5")
	stream.firstEvent = true
	s.step("list stream", stream, 200, specValid)
	s.step("list stream bad status", alice("GET", "/tasks/events?status=done"), 400, specInvalid)
	s.step("unauthorized list stream", req{method: "GET", path: "/tasks/events"}, 401, specInvalid)

	// Every task route: not found (missing, or another owner's) and unauthorized.
	paths := []struct{ method, path string }{
		{"GET", "/tasks/%s"}, {"DELETE", "/tasks/%s"}, {"GET", "/tasks/%s/result"}, {"GET", "/tasks/%s/events"},
		{"GET", "/tasks/%s/devices"}, {"GET", "/tasks/%s/devices/web-1"}, {"GET", "/tasks/%s/devices/web-1/output"},
		{"DELETE", "/tasks/%s/devices/web-1"}, {"POST", "/tasks/%s/relaunch"}, {"GET", "/tasks/%s/deliveries"},
	}
	for _, p := range paths {
		var body string
		if p.method == "POST" {
			body = `{"devices":"all"}`
		}
		missing := alice(p.method, fmt.Sprintf(p.path, missingID))
		missing.body = body
		s.step("missing "+p.path, missing, 404, specValid)
		s.step("another owner's "+p.path, req{method: p.method, path: fmt.Sprintf(p.path, tk.ID), token: bobToken, body: body}, 404, specValid)
		s.step("unauthorized "+p.path, req{method: p.method, path: fmt.Sprintf(p.path, tk.ID), body: body}, 401, specInvalid)
	}
	s.step("missing device", alice("GET", tk.Links.Devices+"/web-9"), 404, specValid)
	s.step("cancel missing device", alice("DELETE", tk.Links.Devices+"/web-9"), 404, specValid)
	s.step("unauthorized list", req{method: "GET", path: "/tasks"}, 401, specInvalid)
	s.step("unauthorized submit", req{method: "POST", path: "/tasks", body: submitBody("web-1")}, 401, specInvalid)

	// What the spec cannot route: unknown paths and methods.
	s.step("unknown path", alice("GET", "/jobs"), 404, unrouted)
	s.step("wrong method", alice("PUT", tk.Links.Self), 405, unrouted)

	// An internal failure.
	b.store.broken.Store(true)
	s.step("internal error", alice("GET", tk.Links.Self), 500, specValid)
	b.store.broken.Store(false)

	missing := s.uncovered(func(op string, status int) bool {
		switch {
		case status == 500 || status == 503:
			return true // one of each is walked above; the rest are the same components
		case op == "submitTask" && status == 409:
			return true // a concurrent write of the same key: a store race the walk cannot stage
		case op == "getDeviceOutput" && status == 409:
			return true // a follow whose time is up where answers are whole: TestFollowWithoutAFollowerAnswersOnceTheDeviceEnds
		case op == "listInventory" && status == 404:
			return true // a server without an inventory: TestInventoryWithoutOne
		case status == 403 || status == 429:
			return true // API Gateway's own answers on AWS (template.yaml's gateway responses)
		}
		return false
	})
	if len(missing) > 0 {
		t.Errorf("documented responses the walk never produced:\n%s", strings.Join(missing, "\n"))
	}
	if !s.covered["getTask 500"] || !s.covered["submitTask 503"] {
		t.Error("the walk lost its 500 or 503 step")
	}
}
