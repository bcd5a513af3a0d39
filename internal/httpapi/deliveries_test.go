package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

const notifyBody = `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"https://hooks.example/fleet","events":["task.started","device.finished"]}}`

func TestSubmitWithNotify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: notifyBody, header: http.Header{"Idempotency-Key": {"n1"}}})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.StatusCode, r.body)
	}
	got := decode[api.Task](t, r)
	self := b.srv.URL + "/tasks/" + got.ID
	if n := got.Request.Notify; n == nil || n.URL != "https://hooks.example/fleet" || !slices.Equal(n.Events, []string{"task.started", "device.finished"}) {
		t.Errorf("request.notify = %+v", got.Request.Notify)
	}
	if got.Links.Deliveries != self+"/deliveries" {
		t.Errorf("links.deliveries = %q, want %s/deliveries", got.Links.Deliveries, self)
	}
	// The links of the task's payloads start where the caller submitted it.
	if stored := b.storedTasks("alice"); len(stored) != 1 || stored[0].Request.Notify.Links != b.srv.URL {
		t.Errorf("stored notify = %+v, want links based on %s", stored[0].Request.Notify, b.srv.URL)
	}
	// Another subscription under the same key is another request.
	other := b.do(req{method: "POST", path: "/tasks", token: aliceToken, header: http.Header{"Idempotency-Key": {"n1"}},
		body: `{"deviceIds":["web-1"],"scriptUrl":"scripts/x","notify":{"url":"https://hooks.example/other"}}`})
	wantProblem(t, other, http.StatusUnprocessableEntity, api.ProblemIdempotencyMismatch)

	// Without notify, a task has neither.
	plain := b.submit("web-2")
	if plain.Request.Notify != nil || plain.Links.Deliveries != "" {
		t.Errorf("a task without notify shows %+v and %q", plain.Request.Notify, plain.Links.Deliveries)
	}
}

func TestWebhookPayloadIsTheEventStreamsTaskWithItsType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: notifyBody})
	id := decode[api.Task](t, created).ID
	stored := b.storedTasks("alice")[0]
	payload, err := WebhookPayload(true)(stored, task.WebhookTaskStarted, "https://fleet.example.com/v1/")
	if err != nil {
		t.Fatal(err)
	}
	var ev api.WebhookEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "task.started" || ev.ID != id || ev.Links.Self != "https://fleet.example.com/v1/tasks/"+id || ev.Progress.Devices.Total != 1 {
		t.Errorf("payload %s", payload)
	}
}

func TestDeliveriesListEveryAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Task](t, b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: notifyBody})).ID
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	started := task.WebhookEventID(id, task.WebhookTaskStarted, at)
	records := []task.Delivery{
		{TaskID: id, EventID: started, Type: task.WebhookTaskStarted, EventAt: at, Attempt: 1, At: at, StatusCode: 500,
			Error: "the receiver answered 500", Outcome: task.DeliveryRetrying, NextAttemptAt: new(at.Add(5 * time.Second))},
		{TaskID: id, EventID: started, Type: task.WebhookTaskStarted, EventAt: at, Attempt: 2, At: at.Add(5 * time.Second),
			Error: "the receiver did not answer within 10s", Outcome: task.DeliveryRetrying, NextAttemptAt: new(at.Add(15 * time.Second))},
		{TaskID: id, EventID: started, Type: task.WebhookTaskStarted, EventAt: at, Attempt: 3, At: at.Add(15 * time.Second),
			StatusCode: 200, Outcome: task.DeliveryDelivered},
	}
	for _, d := range records {
		if err := b.store.RecordDelivery(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	var items []api.Delivery
	path := "/tasks/" + id + "/deliveries?limit=2"
	for path != "" {
		r := b.do(req{method: "GET", path: path, token: aliceToken})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.StatusCode, r.body)
		}
		page := decode[api.DeliveryList](t, r)
		items = append(items, page.Items...)
		path = page.Next
	}
	if len(items) != 3 {
		t.Fatalf("listed %d attempts, want 3: %+v", len(items), items)
	}
	first, second, third := items[0], items[1], items[2]
	if first.EventID != started || first.Type != "task.started" || first.Attempt != 1 || first.StatusCode == nil || *first.StatusCode != 500 ||
		first.Outcome != "retrying" || first.NextAttemptAt == nil || !first.NextAttemptAt.Equal(at.Add(5*time.Second)) {
		t.Errorf("first attempt %+v", first)
	}
	if second.StatusCode != nil || second.Error == "" || second.Attempt != 2 {
		t.Errorf("second attempt %+v, want no status code and the error", second)
	}
	if third.Outcome != "delivered" || third.NextAttemptAt != nil || *third.StatusCode != 200 {
		t.Errorf("third attempt %+v", third)
	}
	wantProblem(t, b.do(req{method: "GET", path: "/tasks/" + id + "/deliveries", token: bobToken}), http.StatusNotFound, api.ProblemNotFound)
	wantProblem(t, b.do(req{method: "GET", path: "/tasks/" + id + "/deliveries?cursor=zz", token: aliceToken}), http.StatusBadRequest, api.ProblemMalformed)
	wantProblem(t, b.do(req{method: "POST", path: "/tasks/" + id + "/deliveries", token: aliceToken}), http.StatusMethodNotAllowed, api.ProblemMethodNotAllowed)
}
