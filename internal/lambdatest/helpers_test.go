package lambdatest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
	"github.com/fleetrun/fleetrun/internal/task"
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

// apiEvent returns events/<name> as a REST API proxy event, for a test to adjust.
func apiEvent(t *testing.T, name string) events.APIGatewayProxyRequest {
	t.Helper()
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(readEvent(t, name), &ev); err != nil {
		t.Fatalf("events/%s: %v", name, err)
	}
	return ev
}

// route points an API event at a resource of the API (as API Gateway names it, "/tasks/{id}")
// and the path the caller asked for, as API Gateway would send it for the same caller, with no
// query.
func route(ev events.APIGatewayProxyRequest, resource, path string) events.APIGatewayProxyRequest {
	ev.Resource, ev.Path = resource, path
	ev.RequestContext.ResourcePath, ev.RequestContext.Path = resource, "/"+ev.RequestContext.Stage+path
	ev.QueryStringParameters, ev.MultiValueQueryStringParameters = nil, nil
	ev.Headers, ev.MultiValueHeaders = maps.Clone(ev.Headers), maps.Clone(ev.MultiValueHeaders)
	delete(ev.Headers, "If-None-Match")
	delete(ev.MultiValueHeaders, "If-None-Match")
	return ev
}

// forTask points a single-task API event (status, cancel) at task id.
func forTask(ev events.APIGatewayProxyRequest, id string) events.APIGatewayProxyRequest {
	ev = route(ev, "/tasks/{id}", "/tasks/"+id)
	ev.PathParameters = map[string]string{"id": id}
	return ev
}

// setHeader sets a request header in both of the event's maps, as API Gateway sends it.
func setHeader(ev *events.APIGatewayProxyRequest, name, value string) {
	ev.Headers[name], ev.MultiValueHeaders[name] = value, []string{value}
}

// setQuery sets a query parameter in both of the event's maps.
func setQuery(ev *events.APIGatewayProxyRequest, name, value string) {
	if ev.QueryStringParameters == nil {
		ev.QueryStringParameters, ev.MultiValueQueryStringParameters = map[string]string{}, map[string][]string{}
	}
	ev.QueryStringParameters[name], ev.MultiValueQueryStringParameters[name] = value, []string{value}
}

// call invokes an API function on a buffered route and decodes its JSON body into out (when
// not nil).
func call(t *testing.T, fn *lambdatest.Emulator, ev events.APIGatewayProxyRequest, out any) events.APIGatewayProxyResponse {
	t.Helper()
	var resp events.APIGatewayProxyResponse
	if err := fn.InvokeJSON(t.Context(), ev, &resp); err != nil {
		t.Fatalf("%s %s: %v", ev.HTTPMethod, ev.Path, err)
	}
	if resp.Headers[api.HeaderRequestID] == "" {
		t.Errorf("%s %s: no %s header", ev.HTTPMethod, ev.Path, api.HeaderRequestID)
	}
	if out != nil && resp.Body != "" {
		if err := json.Unmarshal([]byte(resp.Body), out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", ev.HTTPMethod, ev.Path, resp.StatusCode, resp.Body, err)
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
	return q.nextMatching(t, fmt.Sprintf("%s message for task %s", action, id), within, func(body string) bool {
		m, err := sqsqueue.Decode(body)
		return err == nil && m.TaskID == id && m.Action == action
	})
}

// nextJob returns the first webhook job of event id, and the job, waiting for it up to within
// (a retry is sent with a delay).
func (q *queue) nextJob(t *testing.T, id string, within time.Duration) (events.SQSMessage, task.WebhookJob) {
	t.Helper()
	r := q.nextMatching(t, "webhook job "+id, within, func(body string) bool {
		j, err := sqsqueue.DecodeWebhook(body)
		return err == nil && j.ID == id
	})
	j, _ := sqsqueue.DecodeWebhook(r.Body)
	return r, j
}

// nextMatching returns the first message whose body match accepts, waiting for it up to within.
func (q *queue) nextMatching(t *testing.T, what string, within time.Duration, match func(body string) bool) events.SQSMessage {
	t.Helper()
	var found events.SQSMessage
	clocktest.Eventually(t, within, func() error {
		for i, r := range q.held {
			if match(r.Body) {
				q.held = append(q.held[:i], q.held[i+1:]...)
				found = r
				return nil
			}
		}
		q.held = append(q.held, q.receive(t, 1)...)
		return fmt.Errorf("no %s", what)
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
