package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// receiver answers each request with the next status of its script (the last repeats) and
// records when each came, by the test's clock.
type receiver struct {
	mu       sync.Mutex
	clock    *clocktest.Clock
	statuses []int
	header   http.Header
	at       []time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.at = append(rc.at, rc.clock.Now())
	status := rc.statuses[0]
	if len(rc.statuses) > 1 {
		rc.statuses = rc.statuses[1:]
	}
	for k, v := range rc.header {
		w.Header()[k] = v
	}
	rc.header = nil // only the first answer carries it
	w.WriteHeader(status)
}

func (rc *receiver) times() []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]time.Time(nil), rc.at...)
}

// rig is the local delivery path with a fake clock: the embedded store and its outbox, the
// engine, a Sender allowed to reach the loopback interface, and the Loop, stepped by hand.
type rig struct {
	store *localstore.Store
	eng   *engine.Engine
	loop  *webhook.Loop
	clock *clocktest.Clock
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clock := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	store, err := localstore.Open(filepath.Join(t.TempDir(), "fleetrun.db"), localstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, clock: clock}
	r.loop = webhook.NewLoop(webhook.LoopConfig{Outbox: store, Now: clock.Now,
		Deliver: func(ctx context.Context, j task.WebhookJob) (*task.WebhookJob, error) {
			return r.eng.DeliverWebhook(ctx, j)
		}})
	r.eng = engine.New(engine.Config{Store: store, Queue: nopQueue{}, Now: clock.Now, Retention: 7 * 24 * time.Hour,
		Rules: task.Rules{CheckWebhookURL: func(string) error { return nil }},
		Webhooks: engine.Webhooks{Queue: r.loop, Sender: webhook.NewSender(webhook.SenderConfig{Secret: secret,
			Policy: webhook.Policy{AllowLoopback: true}}),
			Payload: func(t *task.Task, typ task.WebhookType, _ string) ([]byte, error) {
				return json.Marshal(map[string]any{"type": typ, "id": t.ID})
			}}})
	return r
}

type nopQueue struct{}

func (nopQueue) Send(context.Context, engine.Message, time.Duration) error { return nil }

// finish submits a task that notifies url, and ends it (cancelled before it started), which
// puts its task.finished event in the outbox.
func (r *rig) finish(t *testing.T, url string) *task.Task {
	t.Helper()
	ctx := context.Background()
	tk, _, err := r.eng.Submit(ctx, engine.Submission{Owner: "alice", Draft: task.Draft{DeviceIDs: []string{"a"},
		ScriptURL: "x.sh", Notify: &task.NotifyDraft{URL: url}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Cancel(ctx, task.Caller{Owner: "alice"}, tk.ID); err != nil {
		t.Fatal(err)
	}
	return tk
}

// drain steps the loop, moving the clock to each next due time, until the outbox is empty.
func (r *rig) drain(t *testing.T) {
	t.Helper()
	for range 1000 {
		next, err := r.loop.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if next.IsZero() {
			return
		}
		r.clock.Set(next)
	}
	t.Fatal("the outbox did not empty in 1000 rounds")
}

func (r *rig) deliveries(t *testing.T, id string) []*task.Delivery {
	t.Helper()
	page, err := r.eng.Deliveries(context.Background(), task.Caller{Owner: "alice"}, id, task.DeliveryQuery{Limit: task.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return page.Deliveries
}

// TestRetriesForADay lets a receiver fail every attempt, and moves the fake clock from one
// attempt to the next: the attempts back off exponentially with jitter up to an hour apart,
// honour the first answer's Retry-After, and go on until the first is at least a day behind;
// every attempt is recorded, and the last says the event is given up.
func TestRetriesForADay(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := &receiver{clock: r.clock, statuses: []int{http.StatusTooManyRequests, http.StatusServiceUnavailable},
		header: http.Header{"Retry-After": {"600"}}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	tk := r.finish(t, srv.URL+"/hook")
	r.drain(t)

	at := rc.times()
	first, last := at[0], at[len(at)-1]
	if last.Sub(first) < 24*time.Hour || last.Sub(first) > 25*time.Hour {
		t.Errorf("attempts from %v to %v (%v), want a little over a day", first, last, last.Sub(first))
	}
	if got := at[1].Sub(at[0]); got != 10*time.Minute {
		t.Errorf("the attempt after a Retry-After of 600 s came %v later, want 10m", got)
	}
	retry := task.DefaultWebhookRetry
	for n := 2; n < len(at)-1; n++ {
		gap, full := at[n].Sub(at[n-1]), retry.Backoff(n)
		if gap < full/2 || gap > full {
			t.Errorf("gap after attempt %d is %v, want between %v and %v", n, gap, full/2, full)
		}
	}
	recs := r.deliveries(t, tk.ID)
	if len(recs) != len(at) {
		t.Fatalf("%d attempts made, %d recorded", len(at), len(recs))
	}
	for i, d := range recs {
		want := task.DeliveryRetrying
		if i == len(recs)-1 {
			want = task.DeliveryFailed
		}
		if d.Attempt != i+1 || d.Outcome != want || !d.At.Equal(at[i]) || (want == task.DeliveryRetrying) != (d.NextAttemptAt != nil) {
			t.Errorf("record %d: %+v, want attempt %d %s at %v", i, d, i+1, want, at[i])
		}
	}
	t.Logf("%d attempts over %v", len(at), last.Sub(first))
}

func TestDeliveredOnTheThirdAttempt(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := &receiver{clock: r.clock, statuses: []int{500, 500, 200}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	tk := r.finish(t, srv.URL)
	r.drain(t)
	recs := r.deliveries(t, tk.ID)
	if len(rc.times()) != 3 || len(recs) != 3 || recs[2].Outcome != task.DeliveryDelivered || recs[2].StatusCode != 200 {
		t.Fatalf("%d attempts, records %+v; want three, the last delivered", len(rc.times()), recs)
	}
}

func TestGoneIsNotRetried(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := &receiver{clock: r.clock, statuses: []int{http.StatusGone}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	tk := r.finish(t, srv.URL)
	r.drain(t)
	recs := r.deliveries(t, tk.ID)
	if len(rc.times()) != 1 || len(recs) != 1 || recs[0].Outcome != task.DeliveryFailed || recs[0].StatusCode != 410 {
		t.Fatalf("%d attempts, records %+v; want one, failed with 410", len(rc.times()), recs)
	}
}
