package sqsqueue

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestWebhookQueueRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fakeSQS{}
	q := NewWebhookQueue(f, "https://sqs.example/123/hooks", func() time.Time { return now })
	job := task.WebhookJob{ID: "t1_finished", Type: task.WebhookTaskFinished, TaskID: "t1", URL: "https://hooks.example.com/",
		At: now.Add(-time.Minute), Links: "https://api.example.com/v1", Payload: []byte(`{"type":"task.finished"}`),
		Attempt: 2, FirstAttemptAt: now.Add(-time.Minute), NextAt: now.Add(7500 * time.Millisecond)}
	later := job
	later.ID, later.NextAt = "t1_started", now.Add(3*time.Hour)
	for _, j := range []task.WebhookJob{job, later} {
		if err := q.Put(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.sent) != 2 || aws.ToString(f.sent[0].QueueUrl) != "https://sqs.example/123/hooks" ||
		f.sent[0].DelaySeconds != 8 || f.sent[1].DelaySeconds != 900 {
		t.Fatalf("sent %+v; want delays of 8 s and, for a job due in 3 h, SQS's longest", f.sent)
	}
	got, err := DecodeWebhook(aws.ToString(f.sent[0].MessageBody))
	if err != nil || !reflect.DeepEqual(got, job) {
		t.Errorf("DecodeWebhook = %+v, %v; want %+v", got, err, job)
	}
}

func TestDecodeWebhookRefuses(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		``,
		`{"v":1,"action":"dispatch","taskId":"t1"}`,
		`{"v":2,"job":{"id":"a","type":"task.finished","taskId":"t","url":"https://h/"}}`,
		`{"v":1,"job":{"id":"a","type":"task.exploded","taskId":"t","url":"https://h/"}}`,
		`{"v":1,"job":{"id":"a","type":"task.finished","taskId":"t"}}`,
		`{"v":1,"job":{"id":"a","type":"task.finished","taskId":"t","url":"https://h/","attempt":-1}}`,
		`{"v":1,"job":{"id":"a","type":"task.finished","taskId":"t","url":"https://h/"}} {}`,
	} {
		if _, err := DecodeWebhook(body); !errors.Is(err, engine.ErrMalformed) {
			t.Errorf("DecodeWebhook(%q) = %v, want ErrMalformed", body, err)
		}
	}
}

func TestHandleWebhooksReportsWhatFailed(t *testing.T) {
	t.Parallel()
	good := `{"v":1,"job":{"id":"ok","type":"task.finished","taskId":"t","url":"https://h/"}}`
	failing := `{"v":1,"job":{"id":"fails","type":"task.finished","taskId":"t","url":"https://h/"}}`
	ev := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m1", Body: good}, {MessageId: "m2", Body: failing}, {MessageId: "m3", Body: "poison"}}}
	var handled []string
	resp := HandleWebhooks(context.Background(), ev, func(_ context.Context, j task.WebhookJob) error {
		handled = append(handled, j.ID)
		if j.ID == "fails" {
			return errors.New("the table is unavailable")
		}
		return nil
	}, nil, nil)
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	if !slices.Equal(handled, []string{"ok", "fails"}) || !slices.Equal(failed, []string{"m2", "m3"}) {
		t.Errorf("handled %v, failed %v; want both jobs handled, the failed one and the poison reported", handled, failed)
	}
}
