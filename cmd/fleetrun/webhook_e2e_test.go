package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/webhook/webhooktest"
)

// webhookSecret signs the test servers' webhooks.
const webhookSecret = "whsec_C2FtcGxlLXNpZ25pbmcta2V5LWZvci10ZXN0cw=="

// deliveries lists a task's delivery records through the API.
func (s *server) deliveries(id string) []api.Delivery {
	s.t.Helper()
	r := s.do(http.MethodGet, "/tasks/"+id+"/deliveries", nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /tasks/%s/deliveries: %d %s", id, r.status, r.body)
	}
	var list api.DeliveryList
	r.decode(s.t, &list)
	return list.Items
}

// waitDeliveries waits until the task's records satisfy cond.
func (s *server) waitDeliveries(id string, within time.Duration, cond func([]api.Delivery) error) []api.Delivery {
	s.t.Helper()
	var got []api.Delivery
	clocktest.Eventually(s.t, within, func() error {
		got = s.deliveries(id)
		return cond(got)
	})
	return got
}

// hasOutcomes is the condition, for waitDeliveries, that a task's deliveries are want
// (webhooktest.Outcomes).
func hasOutcomes(want string) func([]api.Delivery) error {
	return func(ds []api.Delivery) error {
		if got := webhooktest.Outcomes(ds); got != want {
			return fmt.Errorf("deliveries %q, want %q", got, want)
		}
		return nil
	}
}

// TestWebhooksAreSignedAndRetried runs fleetrun serve with a secret and the real
// --allow-http-webhooks (the receivers are on 127.0.0.1). Every request verifies; a receiver
// that answers 500 twice gets the event a third time, which it takes; one that answers 410
// gets it once; one that subscribed to every event gets task.started, device.finished and
// task.finished, and /deliveries lists each attempt.
func TestWebhooksAreSignedAndRetried(t *testing.T) {
	t.Parallel()
	rc := webhooktest.Start(t, webhookSecret, map[string][]int{"/flaky": {500, 500, 200}, "/gone": {410}})
	s := startServer(t, t.TempDir(), scriptRoot(t), "--webhook-secret", webhookSecret, "--allow-http-webhooks")
	flaky := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh", Notify: &api.Notify{URL: rc.URL + "/flaky"}})
	gone := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh", Notify: &api.Notify{URL: rc.URL + "/gone"}})
	all := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1", "d2", "d3"}, ScriptURL: "flaky.sh", Notify: &api.Notify{URL: rc.URL + "/all",
		Events: []string{"task.started", "device.finished", "task.finished"}}})
	if flaky.Links.Deliveries == "" || flaky.Request.Notify == nil || flaky.Request.Notify.Events[0] != "task.finished" {
		t.Fatalf("the task does not show its subscription: %+v %+v", flaky.Request.Notify, flaky.Links)
	}

	// 500, 500, then taken: three attempts, backing off, each signed, one event id.
	s.waitDeliveries(flaky.ID, 60*time.Second, hasOutcomes("1:500:retrying 2:500:retrying 3:200:delivered"))
	got := rc.Requests("/flaky")
	if len(got) != 3 {
		t.Fatalf("the flaky receiver got %d requests, want 3", len(got))
	}
	for _, h := range got {
		if !h.Verified || h.ID != flaky.ID+"_finished" || h.Event.Type != "task.finished" || h.Event.Status != "completed" {
			t.Errorf("request %+v: want a verified task.finished of the completed task, id %s_finished", h, flaky.ID)
		}
	}
	if gap := got[2].At.Sub(got[1].At); gap < got[1].At.Sub(got[0].At) {
		t.Errorf("the retries did not back off: %v, then %v", got[1].At.Sub(got[0].At), gap)
	}

	// 410: one attempt, given up, and never another.
	s.waitDeliveries(gone.ID, 30*time.Second, hasOutcomes("1:410:failed"))
	if n := len(rc.Requests("/gone")); n != 1 {
		t.Errorf("the receiver that answered 410 got %d requests, want 1", n)
	}

	// Every event of the task that asked for all three.
	clocktest.Eventually(t, 30*time.Second, func() error {
		types := map[string]int{}
		for _, h := range rc.Requests("/all") {
			if !h.Verified {
				return fmt.Errorf("request %+v does not verify", h)
			}
			types[h.Event.Type]++
		}
		if types["task.started"] != 1 || types["device.finished"] < 1 || types["task.finished"] != 1 {
			return fmt.Errorf("events %v, want one task.started, at least one device.finished, one task.finished", types)
		}
		return nil
	})
	if ds := s.deliveries(all.ID); len(ds) < 3 || ds[0].Type != "task.started" || ds[len(ds)-1].Type != "task.finished" {
		t.Errorf("the deliveries of every event: %+v", ds)
	}

	// With the flag, http is for the loopback interface alone.
	r := s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh",
		Notify: &api.Notify{URL: "http://10.0.0.1/"}})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "private address") {
		t.Errorf("http://10.0.0.1/ with --allow-http-webhooks: %d %s", r.status, r.body)
	}
}

// TestWebhookPendingAtSIGKILLIsDeliveredAfterRestart kills the server while an event waits for
// its retry: the outbox is in the store, so the restarted server makes the retry.
func TestWebhookPendingAtSIGKILLIsDeliveredAfterRestart(t *testing.T) {
	t.Parallel()
	data, scripts := t.TempDir(), scriptRoot(t)
	rc := webhooktest.Start(t, webhookSecret, map[string][]int{"/hook": {503, 204}})
	args := []string{"--webhook-secret", webhookSecret, "--allow-http-webhooks"}
	s := startServer(t, data, scripts, args...)
	tk := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh", Notify: &api.Notify{URL: rc.URL + "/hook"}})
	first := s.waitDeliveries(tk.ID, 30*time.Second, hasOutcomes("1:503:retrying"))
	s.kill()

	s2 := startServer(t, data, scripts, args...)
	done := s2.waitDeliveries(tk.ID, 60*time.Second, hasOutcomes("1:503:retrying 2:204:delivered"))
	got := rc.Requests("/hook")
	if len(got) != 2 || !got[0].Verified || !got[1].Verified || got[0].ID != got[1].ID {
		t.Fatalf("the receiver got %+v, want the same event twice, both signed", got)
	}
	if done[1].At.Before(*first[0].NextAttemptAt) {
		t.Errorf("the retry came at %v, before its time %v", done[1].At, *first[0].NextAttemptAt)
	}
}

// TestWebhookURLsThatReachInsideAreRefused submits notify URLs that point inside the network
// to a server without --allow-http-webhooks: each is a 422 naming notify.url, and nothing is
// stored. A server without a secret refuses notify altogether.
func TestWebhookURLsThatReachInsideAreRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t), "--webhook-secret", webhookSecret)
	rc := webhooktest.Start(t, webhookSecret, nil)
	port := rc.URL[strings.LastIndex(rc.URL, ":")+1:]
	for url, why := range map[string]string{
		"http://169.254.169.254/":                     "link-local",
		"http://10.0.0.1/":                            "private address",
		"https://localhost:" + port + "/hook":         "resolves to 127.0.0.1, a loopback address",
		"http://localhost:" + port + "/hook":          "loopback address",
		"https://[::ffff:169.254.169.254]/latest/api": "link-local",
	} {
		r := s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh",
			Notify: &api.Notify{URL: url}})
		var p api.Problem
		r.decode(t, &p)
		if r.status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Pointer != "/notify/url" ||
			!strings.Contains(p.Errors[0].Detail, why) {
			t.Errorf("notify.url %s: %d %s; want 422 on /notify/url saying %q", url, r.status, r.body, why)
		}
	}
	if n := countTasks(t, s); n != 0 {
		t.Errorf("refused submits stored %d tasks", n)
	}
	if got := rc.Requests("/hook"); len(got) != 0 {
		t.Errorf("the receiver on localhost was called: %+v", got)
	}

	plain := startServer(t, t.TempDir(), scriptRoot(t))
	r := plain.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"d1"}, ScriptURL: "ok.sh",
		Notify: &api.Notify{URL: "https://hooks.example.com/"}})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "sends no webhooks") {
		t.Errorf("notify to a server without a secret: %d %s", r.status, r.body)
	}
}
