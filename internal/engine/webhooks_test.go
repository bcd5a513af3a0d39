package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// hookQueue records the webhook jobs the engine puts; fail makes the next puts fail.
type hookQueue struct {
	mu   sync.Mutex
	jobs []task.WebhookJob
	fail int
}

func (q *hookQueue) Put(_ context.Context, job task.WebhookJob) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail > 0 {
		q.fail--
		return errors.New("outbox unavailable")
	}
	q.jobs = append(q.jobs, job)
	return nil
}

func (q *hookQueue) take() []task.WebhookJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.jobs
	q.jobs = nil
	return out
}

// payload renders what the tests check of a webhook body: the type, the status and how many
// devices are done.
func payload(t *task.Task, typ task.WebhookType, links string) ([]byte, error) {
	return json.Marshal(map[string]any{"type": typ, "status": t.Status, "done": t.Counts.Done(), "links": links})
}

// scriptedSender answers each attempt with the next result and counts the attempts.
type scriptedSender struct {
	mu      sync.Mutex
	results []task.AttemptResult
	sent    [][]byte
}

func (s *scriptedSender) Send(_ context.Context, _ task.WebhookJob, body []byte) task.AttemptResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, body)
	r := s.results[0]
	if len(s.results) > 1 {
		s.results = s.results[1:]
	}
	return r
}

func (s *scriptedSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

func hookSetup(t *testing.T, sender engine.WebhookSender) (*bundle, *hookQueue) {
	t.Helper()
	b := setup(t, nil)
	hq := &hookQueue{}
	b.eng = engine.New(engine.Config{Store: b.store, Queue: b.queue, Runner: b.runner, Publisher: b.pub,
		Rules: task.Rules{DeviceID: task.LocalDeviceID, CheckWebhookURL: func(string) error { return nil }},
		Now:   b.clock.Now, Retention: time.Hour,
		Webhooks: engine.Webhooks{Queue: hq, Payload: payload, Sender: sender, Jitter: func() float64 { return 0.5 }}})
	return b, hq
}

func (b *bundle) submitNotify(t *testing.T, events []string, devices ...string) *task.Task {
	t.Helper()
	tk, _, err := b.eng.Submit(context.Background(), engine.Submission{Owner: "alice", Links: "https://fleet.example",
		Draft: task.Draft{DeviceIDs: devices, ScriptURL: "hello.sh", Notify: &task.NotifyDraft{URL: "https://hooks.example/", Events: events}}})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func decodePayload(t *testing.T, job task.WebhookJob) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(job.Payload, &m); err != nil {
		t.Fatalf("payload of %s: %v", job.ID, err)
	}
	return m
}

func TestWebhookEventsFollowTheTask(t *testing.T) {
	t.Parallel()
	b, hq := hookSetup(t, nil)
	tk := b.submitNotify(t, []string{"task.started", "device.finished", "task.finished"}, "a", "b", "c")
	if jobs := hq.take(); len(jobs) != 0 {
		t.Fatalf("a submit put %v", jobs)
	}
	b.handle(t, engine.ActionDispatch, tk.ID)
	jobs := hq.take()
	if len(jobs) != 1 || jobs[0].ID != tk.ID+"_started" || jobs[0].Type != task.WebhookTaskStarted || decodePayload(t, jobs[0])["status"] != "running" ||
		decodePayload(t, jobs[0])["links"] != "https://fleet.example" || jobs[0].URL != "https://hooks.example/" {
		t.Fatalf("after the dispatch: %+v", jobs)
	}
	// A redelivered dispatch puts the event again; the outbox and DeliverWebhook keep it one.
	b.handle(t, engine.ActionDispatch, tk.ID)
	if again := hq.take(); len(again) != 1 || again[0].ID != jobs[0].ID {
		t.Fatalf("after a redelivered dispatch: %+v", again)
	}

	// Two devices finish within one second: one device.finished event, due when the second is
	// over and rendered then.
	b.clock.Set(time.Date(2026, 11, 26, 12, 0, 10, 200e6, time.UTC))
	b.report(t, tk.ID, task.DeviceRunning, "a", "b", "c")
	if jobs := hq.take(); len(jobs) != 0 {
		t.Fatalf("devices starting put %v", jobs)
	}
	b.report(t, tk.ID, task.DeviceSucceeded, "a")
	b.clock.Advance(500 * time.Millisecond)
	b.report(t, tk.ID, task.DeviceFailed, "b")
	window := time.Date(2026, 11, 26, 12, 0, 10, 0, time.UTC)
	jobs = hq.take()
	if len(jobs) != 1 || jobs[0].ID != fmt.Sprintf("%s_window_%d", tk.ID, window.Unix()) || !jobs[0].At.Equal(window) ||
		!jobs[0].NextAt.Equal(window.Add(time.Second)) || jobs[0].Payload != nil {
		t.Fatalf("two devices in one second: %+v", jobs)
	}
	// The last device, in the next second, ends the task: a window of its own and the end.
	b.clock.Advance(time.Second)
	b.report(t, tk.ID, task.DeviceSucceeded, "c")
	jobs = hq.take()
	if len(jobs) != 2 || jobs[0].Type != task.WebhookDeviceFinished || !jobs[0].At.Equal(window.Add(time.Second)) ||
		jobs[1].ID != tk.ID+"_finished" || decodePayload(t, jobs[1])["status"] != "completed" {
		t.Fatalf("the last device: %+v", jobs)
	}
	if got, _ := b.store.GetTask(context.Background(), tk.ID); !got.Published {
		t.Error("the task is not marked published once its webhook was queued")
	}
}

func TestWebhookEventsAreOnlyThoseAskedFor(t *testing.T) {
	t.Parallel()
	b, hq := hookSetup(t, nil)
	plain := b.submit(t, "a")
	finishedOnly := b.submitNotify(t, nil, "a")
	for _, tk := range []*task.Task{plain, finishedOnly} {
		b.handle(t, engine.ActionDispatch, tk.ID)
		b.report(t, tk.ID, task.DeviceSucceeded, "a")
	}
	jobs := hq.take()
	if len(jobs) != 1 || jobs[0].ID != finishedOnly.ID+"_finished" {
		t.Fatalf("jobs %+v, want only the task.finished event of the task that asked for the default", jobs)
	}
}

func TestFinishedWebhookIsRetriedWithThePublish(t *testing.T) {
	t.Parallel()
	b, hq := hookSetup(t, nil)
	tk := b.submitNotify(t, nil, "a")
	b.handle(t, engine.ActionDispatch, tk.ID)
	hq.fail = 1
	b.report(t, tk.ID, task.DeviceSucceeded, "a")
	if got, _ := b.store.GetTask(context.Background(), tk.ID); got.Published || len(hq.take()) != 0 {
		t.Fatalf("a task whose webhook was not queued is published %v", got.Published)
	}
	// The message the failed publish left behind publishes again, webhook and all.
	var redo []engine.Message
	for _, s := range b.queue.take() {
		redo = append(redo, s.m)
	}
	for _, m := range redo {
		if err := b.eng.Handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if jobs := hq.take(); len(jobs) != 1 || jobs[0].Type != task.WebhookTaskFinished {
		t.Fatalf("after the retry: %+v", jobs)
	}
	if got, _ := b.store.GetTask(context.Background(), tk.ID); !got.Published {
		t.Error("the task is not published after the retry")
	}
}

func TestDeliverWebhook(t *testing.T) {
	t.Parallel()
	sender := &scriptedSender{results: []task.AttemptResult{
		{StatusCode: 503, Err: "the receiver answered 503"}, {StatusCode: 204}}}
	b, hq := hookSetup(t, sender)
	ctx := context.Background()
	tk := b.submitNotify(t, []string{"device.finished"}, "a", "b")
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.report(t, tk.ID, task.DeviceSucceeded, "a")
	job := hq.take()[0]
	b.clock.Set(job.NextAt)
	b.report(t, tk.ID, task.DeviceRunning, "b")

	// The first attempt renders the task as it is once the window has passed, and fails.
	next, err := b.eng.DeliverWebhook(ctx, job)
	if err != nil || next == nil {
		t.Fatalf("first attempt = %v, %v; want a retry", next, err)
	}
	if body := string(sender.sent[0]); body != `{"done":1,"links":"https://fleet.example","status":"running","type":"device.finished"}` {
		t.Errorf("the first attempt posted %s", body)
	}
	// Equal jitter of 0.5 on a 5 s backoff: 3.75 s.
	if next.Attempt != 1 || !next.NextAt.Equal(job.NextAt.Add(3750*time.Millisecond)) || string(next.Payload) != string(sender.sent[0]) ||
		!next.FirstAttemptAt.Equal(job.NextAt) {
		t.Errorf("retry job %+v", next)
	}

	// A second copy of the event as it was before the attempt (a duplicated message, or the
	// outbox of a sender that died before putting the job back) finds attempt 1 made and
	// carries the retries on from there, unsent.
	dup, err := b.eng.DeliverWebhook(ctx, job)
	if err != nil || dup == nil || dup.Attempt != 1 || !dup.NextAt.Equal(next.NextAt) || !dup.FirstAttemptAt.Equal(next.FirstAttemptAt) ||
		sender.count() != 1 {
		t.Fatalf("a stale copy = %+v, %v after %d sends; want it at attempt 1, due with the retry, unsent", dup, err, sender.count())
	}

	// Another sender has claimed attempt 2 and not settled it: this copy waits for the claim.
	claim := task.Delivery{TaskID: tk.ID, EventID: job.ID, Type: job.Type, EventAt: job.At, Attempt: 2,
		At: b.clock.Now(), Outcome: task.DeliverySending}
	if err := b.store.RecordDelivery(ctx, claim); err != nil {
		t.Fatal(err)
	}
	b.clock.Set(next.NextAt)
	waiting, err := b.eng.DeliverWebhook(ctx, *next)
	if err != nil || waiting == nil || waiting.Attempt != 1 || !waiting.NextAt.Equal(claim.At.Add(task.DeliveryClaimTimeout)) || sender.count() != 1 {
		t.Fatalf("a copy behind a live claim = %+v, %v; want it back when the claim times out, unsent", waiting, err)
	}
	// The claim is abandoned: the copy takes the attempt over, and the receiver takes it.
	b.clock.Set(waiting.NextAt)
	if done, err := b.eng.DeliverWebhook(ctx, *waiting); err != nil || done != nil || sender.count() != 2 {
		t.Fatalf("the takeover = %v, %v; want it delivered", done, err)
	}
	if string(sender.sent[1]) != string(sender.sent[0]) {
		t.Errorf("a retry posted another body: %s, then %s", sender.sent[0], sender.sent[1])
	}
	// The stale copy, once due, finds the event delivered and is dropped.
	if late, err := b.eng.DeliverWebhook(ctx, *dup); err != nil || late != nil || sender.count() != 2 {
		t.Fatalf("the stale copy after the delivery = %+v, %v; want it dropped unsent", late, err)
	}
	page, err := b.eng.Deliveries(ctx, task.Caller{Owner: "alice"}, tk.ID, task.DeliveryQuery{})
	if err != nil || len(page.Deliveries) != 2 || page.Deliveries[0].Outcome != task.DeliveryRetrying ||
		page.Deliveries[1].Outcome != task.DeliveryDelivered || page.Deliveries[1].StatusCode != 204 {
		t.Fatalf("deliveries %+v, %v", page, err)
	}

	// An event of a task that is gone is dropped.
	gone := job
	gone.ID, gone.TaskID = "gone_finished", "gone"
	if next, err := b.eng.DeliverWebhook(ctx, gone); err != nil || next != nil || sender.count() != 2 {
		t.Errorf("an event of an unknown task = %v, %v; want it dropped unsent", next, err)
	}
}
