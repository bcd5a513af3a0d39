package storetest

import (
	"fmt"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// delivery builds attempt n of event typ of tk, made at the clock's time.
func (e *env) delivery(tk *task.Task, typ task.WebhookType, eventAt time.Time, n int) task.Delivery {
	d := task.Delivery{TaskID: tk.ID, EventID: task.WebhookEventID(tk.ID, typ, eventAt), Type: typ,
		EventAt: eventAt, Attempt: n, At: e.clock.Now(), StatusCode: 503, Error: "", Outcome: task.DeliveryRetrying,
		NextAttemptAt: new(e.clock.Now().Add(time.Duration(n) * 10 * time.Second))}
	return d
}

// record stores d, failing the test on error.
func (e *env) record(d task.Delivery) {
	e.t.Helper()
	if err := e.store.RecordDelivery(e.ctx, d); err != nil {
		e.t.Fatalf("RecordDelivery(%s attempt %d) = %v", d.EventID, d.Attempt, err)
	}
}

// allDeliveries lists every delivery record of a task, a page of size limit at a time.
func (e *env) allDeliveries(taskID string, limit int) []*task.Delivery {
	e.t.Helper()
	var out []*task.Delivery
	cursor := ""
	for range 100 {
		page, err := e.store.ListDeliveries(e.ctx, taskID, task.DeliveryQuery{Limit: limit, Cursor: cursor})
		if err != nil {
			e.t.Fatalf("ListDeliveries(%s) = %v", taskID, err)
		}
		if len(page.Deliveries) > limit {
			e.t.Fatalf("ListDeliveries(%s, limit %d) returned %d records", taskID, limit, len(page.Deliveries))
		}
		out = append(out, page.Deliveries...)
		if cursor = page.Next; cursor == "" {
			return out
		}
	}
	e.t.Fatalf("ListDeliveries(%s) did not end after 100 pages", taskID)
	return nil
}

// sameDeliveries fails the test unless got and want hold the same records in the same order.
func sameDeliveries(e *env, what string, got []*task.Delivery, want []task.Delivery) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Fatalf("%s: %d records, want %d: %v", what, len(got), len(want), got)
	}
	for i := range want {
		g, w := *got[i], want[i]
		for _, d := range []*task.Delivery{&g, &w} {
			d.EventAt, d.At = d.EventAt.UTC(), d.At.UTC()
			if d.NextAttemptAt != nil {
				d.NextAttemptAt = new(d.NextAttemptAt.UTC())
			}
		}
		if diff := fieldDiff(g, w); diff != "" {
			e.t.Errorf("%s: record %d differs:\n%s", what, i, diff)
		}
	}
}

func testDeliveries(e *env) {
	e.run("lists attempts by event time, event and attempt, a page at a time", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(2))), task.StatusRunning, 0)
		started := e.clock.Now()
		window := started.Add(3 * time.Second).Truncate(time.Second)
		var want []task.Delivery
		// Written out of order: the later event first, its attempts backwards.
		for n := 3; n >= 1; n-- {
			e.clock.Advance(time.Second)
			d := e.delivery(tk, task.WebhookDeviceFinished, window, n)
			if n == 3 {
				d.Outcome, d.NextAttemptAt, d.StatusCode, d.Error = task.DeliveryDelivered, nil, 204, ""
			}
			e.record(d)
			want = append([]task.Delivery{d}, want...)
		}
		first := e.delivery(tk, task.WebhookTaskStarted, started, 1)
		first.StatusCode, first.Error = 0, "the receiver did not answer within 10s"
		e.record(first)
		second := e.delivery(tk, task.WebhookTaskStarted, started, 2)
		second.Outcome, second.NextAttemptAt, second.StatusCode = task.DeliveryFailed, nil, 410
		e.record(second)
		want = append([]task.Delivery{first, second}, want...)
		for _, limit := range []int{1, 2, 1000} {
			sameDeliveries(e, fmt.Sprintf("pages of %d", limit), e.allDeliveries(tk.ID, limit), want)
		}

		other := e.create(e.newTask(e.id("owner"), deviceNames(1)))
		if got := e.allDeliveries(other.ID, 10); len(got) != 0 {
			e.t.Errorf("a task without deliveries lists %v", got)
		}
		_, err := e.store.ListDeliveries(e.ctx, tk.ID, task.DeliveryQuery{Limit: 10, Cursor: "not-a-cursor"})
		wantCode(e.t, err, task.CodeInvalidQuery, "ListDeliveries with a malformed cursor")
	})

	e.run("an attempt is recorded once", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(1)))
		d := e.delivery(tk, task.WebhookTaskFinished, e.clock.Now(), 1)
		e.record(d)
		again := d
		again.StatusCode, again.Outcome, again.NextAttemptAt = 200, task.DeliveryDelivered, nil
		wantCode(e.t, e.store.RecordDelivery(e.ctx, again), task.CodeConflict, "RecordDelivery of a recorded attempt")
		sameDeliveries(e, "after a repeated attempt", e.allDeliveries(tk.ID, 10), []task.Delivery{d})
	})

	e.run("a claim is replaced by its outcome, and taken over once abandoned", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(1))), task.StatusRunning, 0)
		claim := e.delivery(tk, task.WebhookTaskStarted, e.clock.Now(), 1)
		claim.Outcome, claim.NextAttemptAt, claim.StatusCode = task.DeliverySending, nil, 0
		e.record(claim)
		// Another sender's claim on the same attempt is refused while the first holds.
		rival := claim
		rival.At = claim.At.Add(task.DeliveryClaimTimeout - time.Second)
		wantCode(e.t, e.store.RecordDelivery(e.ctx, rival), task.CodeConflict, "a second claim within the timeout")
		// The first sender records how it went.
		done := claim
		done.At, done.StatusCode, done.Outcome = claim.At.Add(2*time.Second), 500, task.DeliveryRetrying
		done.NextAttemptAt = new(done.At.Add(5 * time.Second))
		e.record(done)
		sameDeliveries(e, "after the outcome", e.allDeliveries(tk.ID, 10), []task.Delivery{done})
		// Once recorded, neither a claim (however late) nor another outcome replaces it.
		late := claim
		late.At = claim.At.Add(time.Hour)
		wantCode(e.t, e.store.RecordDelivery(e.ctx, late), task.CodeConflict, "a claim of a recorded attempt")
		other := done
		other.StatusCode, other.Outcome, other.NextAttemptAt = 200, task.DeliveryDelivered, nil
		wantCode(e.t, e.store.RecordDelivery(e.ctx, other), task.CodeConflict, "an outcome of a recorded attempt")

		// Attempt 2 is claimed and abandoned: after the timeout another sender takes it over.
		abandoned := done
		abandoned.Attempt, abandoned.At, abandoned.Outcome, abandoned.StatusCode, abandoned.NextAttemptAt =
			2, claim.At.Add(10*time.Second), task.DeliverySending, 0, nil
		e.record(abandoned)
		takeover := abandoned
		takeover.At = abandoned.At.Add(task.DeliveryClaimTimeout)
		e.record(takeover)
		sameDeliveries(e, "after a takeover", e.allDeliveries(tk.ID, 10), []task.Delivery{done, takeover})

		// The attempts of one event alone.
		e.record(e.delivery(tk, task.WebhookDeviceFinished, claim.At.Add(time.Second), 1))
		page, err := e.store.ListDeliveries(e.ctx, tk.ID, task.DeliveryQuery{Limit: 10, EventID: claim.EventID, EventAt: claim.EventAt})
		if err != nil {
			e.t.Fatalf("ListDeliveries of one event = %v", err)
		}
		sameDeliveries(e, "one event's attempts", page.Deliveries, []task.Delivery{done, takeover})
	})

	e.run("a finished task takes records; an unknown one does not", func(e *env) {
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(1))), task.StatusCancelled, time.Hour)
		d := e.delivery(tk, task.WebhookTaskFinished, e.clock.Now(), 1)
		e.record(d)
		sameDeliveries(e, "a finished task's records", e.allDeliveries(tk.ID, 10), []task.Delivery{d})
		missing := d
		missing.TaskID = e.id("missing")
		wantCode(e.t, e.store.RecordDelivery(e.ctx, missing), task.CodeNotFound, "RecordDelivery for an unknown task")
	})
}
