package lambdatest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
	"github.com/fleetrun/fleetrun/internal/sqsqueue"
)

// readEvent returns the bytes of events/<name>.
func readEvent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lambdatest.RepoRoot(t), "events", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// apiEvent returns events/<name> as a payload 2.0 request, for a test to adjust.
func apiEvent(t *testing.T, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(readEvent(t, name), &ev); err != nil {
		t.Fatalf("events/%s: %v", name, err)
	}
	return ev
}

// forTask points a single-task API event (status, cancel) at task id.
func forTask(ev events.APIGatewayV2HTTPRequest, id string) events.APIGatewayV2HTTPRequest {
	ev.RawPath = "/tasks/" + id
	ev.RequestContext.HTTP.Path = ev.RawPath
	ev.PathParameters = map[string]string{"id": id}
	delete(ev.Headers, "if-none-match")
	return ev
}

// call invokes an API function and decodes its JSON body into out (when not nil).
func call(t *testing.T, fn *lambdatest.Emulator, ev events.APIGatewayV2HTTPRequest, out any) events.APIGatewayV2HTTPResponse {
	t.Helper()
	var resp events.APIGatewayV2HTTPResponse
	if err := fn.InvokeJSON(t.Context(), ev, &resp); err != nil {
		t.Fatalf("%s %s: %v", ev.RequestContext.HTTP.Method, ev.RawPath, err)
	}
	if resp.Headers[api.HeaderRequestID] == "" {
		t.Errorf("%s %s: no %s header", ev.RequestContext.HTTP.Method, ev.RawPath, api.HeaderRequestID)
	}
	if out != nil && resp.Body != "" {
		if err := json.Unmarshal([]byte(resp.Body), out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", ev.RequestContext.HTTP.Method, ev.RawPath, resp.StatusCode, resp.Body, err)
		}
	}
	return resp
}

// getTask reads a task through the status function.
func getTask(t *testing.T, fn *lambdatest.Emulator, id string) api.Task {
	t.Helper()
	var got api.Task
	if resp := call(t, fn, forTask(apiEvent(t, "status.json"), id), &got); resp.StatusCode != 200 {
		t.Fatalf("GET /tasks/%s: %d %s", id, resp.StatusCode, resp.Body)
	}
	return got
}

// queue reads a queue the way Lambda's event source mapping does for the executor: it
// receives messages, turns them into SQS event records and deletes them. Messages for other
// tasks or actions than the one asked for are kept for later calls.
type queue struct {
	c    *sqs.Client
	url  string
	arn  string
	held []events.SQSMessage
}

// next returns the first message for task id with action, waiting for it up to within (a
// poll is sent with a delay).
func (q *queue) next(t *testing.T, id string, action engine.Action, within time.Duration) events.SQSMessage {
	t.Helper()
	match := func(r events.SQSMessage) bool {
		m, err := sqsqueue.Decode(r.Body)
		return err == nil && m.TaskID == id && m.Action == action
	}
	var found events.SQSMessage
	clocktest.Eventually(t, within, func() error {
		for i, r := range q.held {
			if match(r) {
				q.held = append(q.held[:i], q.held[i+1:]...)
				found = r
				return nil
			}
		}
		q.held = append(q.held, q.receive(t, 1)...)
		return fmt.Errorf("no %s message for task %s", action, id)
	})
	return found
}

// receive long-polls the queue for up to wait seconds and returns what arrived as records.
func (q *queue) receive(t *testing.T, wait int32) []events.SQSMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(wait+10)*time.Second)
	defer cancel()
	out, err := q.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.url), MaxNumberOfMessages: 10,
		WaitTimeSeconds: wait, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	if err != nil {
		t.Fatalf("receive from %s: %v", q.url, err)
	}
	var recs []events.SQSMessage
	for _, m := range out.Messages {
		recs = append(recs, events.SQSMessage{
			MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
			Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes, EventSource: "aws:sqs",
			EventSourceARN: q.arn, AWSRegion: "us-east-1",
		})
		if _, err := q.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatalf("delete from %s: %v", q.url, err)
		}
	}
	return recs
}

// execute invokes the executor with one batch and returns the ids it reported as failed.
func execute(t *testing.T, fn *lambdatest.Emulator, recs ...events.SQSMessage) []string {
	t.Helper()
	var resp events.SQSEventResponse
	if err := fn.InvokeJSON(t.Context(), events.SQSEvent{Records: recs}, &resp); err != nil {
		t.Fatalf("executor: %v", err)
	}
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	return failed
}
