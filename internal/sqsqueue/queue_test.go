package sqsqueue

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/engine"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// fakeSQS records what it is asked to send.
type fakeSQS struct {
	sent []*sqs.SendMessageInput
	err  error
}

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	f.sent = append(f.sent, in)
	return &sqs.SendMessageOutput{MessageId: aws.String("m1")}, nil
}

func TestDelaySeconds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		delay time.Duration
		want  int32
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Millisecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{60 * time.Second, 60},
		{MaxDelay - time.Millisecond, 900},
		{MaxDelay, 900},
		{MaxDelay + time.Second, 900},
		{24 * time.Hour, 900},
	}
	for _, c := range cases {
		if got := DelaySeconds(c.delay); got != c.want {
			t.Errorf("DelaySeconds(%v) = %d, want %d", c.delay, got, c.want)
		}
	}
}

func TestSendEncodesMessageAndDelay(t *testing.T) {
	t.Parallel()
	f := &fakeSQS{}
	q := New(f, "https://sqs.example/123/q")
	m := engine.Message{Version: engine.MessageVersion, Action: engine.ActionPoll, TaskID: "01JD0000000000000000000000", Attempt: 3}
	if err := q.Send(context.Background(), m, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(f.sent) != 1 {
		t.Fatalf("sent %d messages, want 1", len(f.sent))
	}
	in := f.sent[0]
	if aws.ToString(in.QueueUrl) != "https://sqs.example/123/q" {
		t.Errorf("queue url %q", aws.ToString(in.QueueUrl))
	}
	if in.DelaySeconds != 900 {
		t.Errorf("DelaySeconds %d, want 900 (clamped)", in.DelaySeconds)
	}
	got, err := Decode(aws.ToString(in.MessageBody))
	if err != nil {
		t.Fatalf("sent body does not decode: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}
}

func TestSendRefusesMalformedAndWrapsClientErrors(t *testing.T) {
	t.Parallel()
	f := &fakeSQS{}
	q := New(f, "q")
	err := q.Send(context.Background(), engine.Message{Version: engine.MessageVersion, Action: "explode", TaskID: "t"}, 0)
	if !errors.Is(err, engine.ErrMalformed) {
		t.Errorf("unknown action: err = %v, want ErrMalformed", err)
	}
	if len(f.sent) != 0 {
		t.Errorf("a malformed message was sent")
	}
	boom := errors.New("boom")
	f.err = boom
	err = q.Send(context.Background(), engine.Message{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: "t"}, 0)
	if !errors.Is(err, boom) {
		t.Errorf("client error not wrapped: %v", err)
	}
}
