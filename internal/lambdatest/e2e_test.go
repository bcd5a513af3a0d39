package lambdatest_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
)

// sampleBucket is the bucket events/submit.json names, given as the AllowedScriptBuckets
// parameter as samconfig.toml's local_invoke section does.
const sampleBucket = "example-fleetrun-scripts"

// The devices of events/submit.json, and those of a second task that never finish.
var (
	sampleDevices = []string{"i-0123456789abcdef0", "i-0fedcba9876543210", "mi-0123456789abcdef0"}
	stuckDevices  = []string{"i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa2"}
)

// TestLocalInvoke runs the functions' real bootstraps under aws-lambda-rie against moto
// (DynamoDB, SQS, EventBridge) and the SSM test server, with the table, queues, bus and
// example rule created from template.yaml's own definitions and each function's environment
// taken from the template. It plays the parts of API Gateway, the SQS event source mapping
// and EventBridge by hand, one invocation at a time:
//
//	submit → the dispatch message → executor → SSM commands → a poll message → executor →
//	SSM's status-change events (reordered and duplicated) → progress → completed, and the
//	example rule delivers the completion to its queue; a second task is cancelled while it
//	runs: cancel → executor → CancelCommand → a poll → cancelled; the finished task's event
//	stream, streamed, byte for byte (finishedStream); a third task's device writes 100,000
//	and 20,000 characters, which /output serves byte for byte (fullOutput); a fourth task asks
//	for webhooks, which WebhookFunction delivers, signed, retrying a 503, while its event
//	stream follows its cancel live (webhooksAndStreams). A malformed message on the executor's
//	queue and one on the webhook queue each reach their dead-letter queue. InventoryFunction
//	lists the managed nodes by tag (inventory).
//
// Then every file in events/ is invoked as it is, and cold starts are measured.
func TestLocalInvoke(t *testing.T) {
	sdk := awstest.Config(t)
	ssm := ssmtest.Start(t)
	ssm.Script(sampleDevices[0], ssmtest.Script{Polls: 1, Outcome: ssmtest.Success, Stdout: "patched 3 packages\n"})
	for _, d := range stuckDevices {
		ssm.Script(d, ssmtest.Script{Outcome: ssmtest.Never})
	}
	tpl := loadTemplate(t)
	name := "e2e-" + strings.ToLower(rand.Text()[:8])
	stack, err := lambdatest.Deploy(t.Context(), sdk, tpl, name,
		map[string]string{"AllowedScriptBuckets": sampleBucket, "WebhookSecretParameter": "/" + name + "/webhook-secret"})
	if err != nil {
		t.Fatal(err)
	}
	secret := putWebhookSecret(t, sdk, stack.Refs["WebhookSecretParameter"])

	fns := map[string]*lambdatest.Emulator{}
	var cold []coldStart
	for _, id := range tpl.Functions() {
		env := functionEnv(t, tpl, stack, id, ssm.URL)
		bin := lambdatest.Build(t, id, runtime.GOARCH)
		cold = append(cold, measureColdStart(t, id, bin, env, idleEvent(t, id)))
		fns[id] = lambdatest.Start(t, id, bin, env)
	}
	submitFn, statusFn, cancelFn := fns["SubmitFunction"], fns["StatusFunction"], fns["CancelFunction"]
	executorFn, progressFn := fns["ExecutorFunction"], fns["ProgressFunction"]
	q := &queue{c: sqs.NewFromConfig(sdk), url: stack.Refs["Queue"], arn: stack.Refs["Queue.Arn"]}
	hooks := &queue{c: q.c, url: stack.Refs["WebhookQueue"], arn: stack.Refs["WebhookQueue.Arn"]}

	deadLetter(t, q, executorFn, stack.Refs["DeadLetterQueue"], `{"v":1,"action":"dispatch"}`)
	deadLetter(t, hooks, fns["WebhookFunction"], stack.Refs["WebhookDeadLetterQueue"], `{"v":1,"job":{"id":"poison"}}`)

	// Submit: events/submit.json as API Gateway sends it, and a second task on other devices.
	var t1, t2 api.Task
	resp := call(t, submitFn, apiEvent(t, "submit.json"), &t1)
	base := "https://" + apiEvent(t, "submit.json").RequestContext.DomainName + "/v1"
	if resp.StatusCode != 202 || t1.Status != api.StatusPending || resp.Headers["Location"] != base+"/tasks/"+t1.ID ||
		resp.Headers["Retry-After"] == "" {
		t.Fatalf("submit: %d Location %q Retry-After %q: %s", resp.StatusCode, resp.Headers["Location"], resp.Headers["Retry-After"], resp.Body)
	}
	second := apiEvent(t, "submit.json")
	second.Body = strings.Replace(second.Body, `"deviceIds":["i-0123456789abcdef0","i-0fedcba9876543210","mi-0123456789abcdef0"]`,
		`"deviceIds":["`+strings.Join(stuckDevices, `","`)+`"]`, 1)
	setHeader(&second, "Idempotency-Key", "second-task")
	if resp := call(t, submitFn, second, &t2); resp.StatusCode != 202 || t2.Request.DeviceCount != len(stuckDevices) {
		t.Fatalf("second submit: %d %s", resp.StatusCode, resp.Body)
	}

	// Dispatch: both messages in one batch, with a malformed record that must come back as
	// the batch's only failure (SQS then moves it to the dead-letter queue).
	// SSM throttles the first SendCommand once: the SDK retries it, and the metric counts it.
	ssm.ThrottleNext(ssmtest.OpSendCommand, 1)
	d1, d2 := q.next(t, t1.ID, engine.ActionDispatch, 5*time.Second), q.next(t, t2.ID, engine.ActionDispatch, 5*time.Second)
	bad := events.SQSMessage{MessageId: "malformed-1", Body: `{"v":1,"action":"explode"}`, EventSource: "aws:sqs"}
	if failed := execute(t, executorFn, d1, bad, d2); !slices.Equal(failed, []string{"malformed-1"}) {
		t.Fatalf("dispatch batch failures = %v, want only the malformed record", failed)
	}
	commands := ssm.Commands()
	if len(commands) != 2 {
		t.Fatalf("SSM got %d commands, want one per task: %+v", len(commands), commands)
	}
	for _, c := range commands {
		want, tid := sampleDevices, t1.ID
		if strings.Contains(c.Comment, t2.ID) {
			want, tid = stuckDevices, t2.ID
		}
		if !strings.Contains(c.Comment, tid) || !slices.Equal(c.InstanceIDs, want) || c.DocumentName != stack.Refs["DocumentName"] ||
			!strings.Contains(strings.Join(c.Parameters["sourceInfo"], ""), sampleBucket) ||
			!strings.Contains(strings.Join(c.Parameters["commandLine"], ""), "--dry-run") {
			t.Errorf("command for %s: %+v", tid, c)
		}
	}
	command := func(taskID string) string {
		for _, c := range ssm.Commands() {
			if strings.Contains(c.Comment, taskID) {
				return c.CommandID
			}
		}
		t.Fatalf("no command for %s", taskID)
		return ""
	}

	// Poll: the executor's delayed poll messages; SSM now reports every device in progress.
	p1, p2 := q.next(t, t1.ID, engine.ActionPoll, 30*time.Second), q.next(t, t2.ID, engine.ActionPoll, 30*time.Second)
	if failed := execute(t, executorFn, p1, p2); len(failed) > 0 {
		t.Fatalf("poll batch failures: %v", failed)
	}
	if got := getTask(t, statusFn, t1.ID); got.Status != api.StatusRunning || got.Progress.Devices.Running != len(sampleDevices) {
		t.Fatalf("after a poll: %s with %+v", got.Status, got.Progress.Devices)
	}

	// A long-poll on the running task, answered by a write from another function: the status
	// function re-reads the store until the task changes.
	running := call(t, statusFn, forTask(apiEvent(t, "status.json"), t1.ID), nil)
	if running.Headers["Etag"] == "" {
		t.Fatalf("GET /tasks/%s has no ETag: %v", t1.ID, running.Headers)
	}
	waitEv := forTask(apiEvent(t, "status.json"), t1.ID)
	setHeader(&waitEv, "Prefer", "wait=15")
	setHeader(&waitEv, "If-None-Match", running.Headers["Etag"])
	type answer struct {
		resp events.APIGatewayProxyResponse
		took time.Duration
		err  error
	}
	longPoll := make(chan answer, 1)
	go func() {
		var a answer
		start := time.Now()
		a.err = statusFn.InvokeJSON(t.Context(), waitEv, &a.resp)
		a.took = time.Since(start)
		longPoll <- a
	}()

	// Progress: SSM finishes the first task's invocations and sends its events. They arrive
	// newest first, then all again: the task completes once and nothing moves backwards.
	ssm.Settle()
	var evs []json.RawMessage
	for _, e := range ssm.Events() {
		if strings.Contains(string(e), command(t1.ID)) {
			evs = append(evs, e)
		}
	}
	if len(evs) < 2*len(sampleDevices) {
		t.Fatalf("SSM sent %d events for the first task, want an in-progress and a final one per device", len(evs))
	}
	newestFirst := slices.Clone(evs)
	slices.Reverse(newestFirst)
	progress(t, progressFn, newestFirst...)
	a := <-longPoll
	if a.err != nil || a.resp.StatusCode != 200 || a.resp.Headers["Etag"] == running.Headers["Etag"] ||
		a.resp.Headers["Preference-Applied"] != "wait=15" || a.took >= 15*time.Second {
		t.Errorf("long-poll: %v after %v: %d %v", a.err, a.took, a.resp.StatusCode, a.resp.Headers)
	}
	t.Logf("long-poll with If-None-Match %s answered %s after %v", running.Headers["Etag"], a.resp.Headers["Etag"], a.took.Round(time.Millisecond))
	done := getTask(t, statusFn, t1.ID)
	if done.Status != api.StatusCompleted || done.Progress.Devices.Succeeded != len(sampleDevices) ||
		done.Progress.Percentage != 100 || done.Result == nil || len(done.Result.SucceededDevices) != len(sampleDevices) {
		t.Fatalf("after the events: %+v", done)
	}
	progress(t, progressFn, evs...)
	if again := getTask(t, statusFn, t1.ID); again.Version != done.Version || again.Status != api.StatusCompleted {
		t.Errorf("duplicated events changed the task: version %d → %d, %s", done.Version, again.Version, again.Status)
	}
	var dev api.Device
	devEv := route(apiEvent(t, "status.json"), "/tasks/{id}/devices/{deviceId}", "/tasks/"+t1.ID+"/devices/"+sampleDevices[0])
	if resp := call(t, statusFn, devEv, &dev); resp.StatusCode != 200 || dev.Status != api.DeviceSucceeded ||
		dev.Stdout != "patched 3 packages\n" || dev.ExitCode == nil || *dev.ExitCode != 0 {
		t.Errorf("device %s: %d %+v", sampleDevices[0], resp.StatusCode, dev)
	}

	// The event stream of a finished task, streamed: the prelude, the delimiter, the final
	// state, and the end, byte for byte.
	finishedStream(t, statusFn, done)

	// Cancel the second task while its devices run.
	var c api.Task
	resp = call(t, cancelFn, forTask(apiEvent(t, "cancel.json"), t2.ID), &c)
	if resp.StatusCode != 202 || c.Status != api.StatusCancelling || resp.Headers["Location"] != base+"/tasks/"+t2.ID {
		t.Fatalf("cancel: %d %s", resp.StatusCode, resp.Body)
	}
	if failed := execute(t, executorFn, q.next(t, t2.ID, engine.ActionCancel, 5*time.Second)); len(failed) > 0 {
		t.Fatalf("cancel message failed: %v", failed)
	}
	if n := ssm.Calls(ssmtest.OpCancelCommand); n == 0 {
		t.Fatal("the executor never called CancelCommand")
	}
	if failed := execute(t, executorFn, q.next(t, t2.ID, engine.ActionPoll, 30*time.Second)); len(failed) > 0 {
		t.Fatalf("poll after the cancel failed: %v", failed)
	}
	if got := getTask(t, statusFn, t2.ID); got.Status != api.StatusCancelled || got.Progress.Devices.Cancelled != len(stuckDevices) {
		t.Fatalf("after the cancel: %s %+v", got.Status, got.Progress.Devices)
	}
	if resp := call(t, cancelFn, forTask(apiEvent(t, "cancel.json"), t1.ID), nil); resp.StatusCode != 409 {
		t.Errorf("cancel of a completed task: %d %s", resp.StatusCode, resp.Body)
	}

	// The example rule delivered exactly one "Task Finished" event per task to its queue.
	finished := &queue{c: q.c, url: stack.Refs["TaskFinishedQueue"], arn: stack.Refs["TaskFinishedQueue.Arn"]}
	got := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		for _, r := range finished.receive(t, 1) {
			var ev struct {
				Source     string `json:"source"`
				DetailType string `json:"detail-type"`
				Detail     struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"detail"`
			}
			if err := json.Unmarshal([]byte(r.Body), &ev); err != nil || ev.Source != "fleetrun" || ev.DetailType != "Task Finished" {
				t.Errorf("unexpected message on the example rule's queue: %s", r.Body)
			}
			got[ev.Detail.ID]++
		}
	}
	if extra := finished.receive(t, 1); len(extra) > 0 {
		got["more"] += len(extra)
	}
	want := map[string]int{t1.ID + ":completed": 1, t2.ID + ":cancelled": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Task Finished events by detail.id = %v, want %v", got, want)
	}

	// A request without an identity is refused.
	anon := apiEvent(t, "list.json")
	anon.RequestContext.Identity.UserArn = ""
	if resp := call(t, statusFn, anon, nil); resp.StatusCode != 401 {
		t.Errorf("anonymous list: %d %s", resp.StatusCode, resp.Body)
	}

	inventory(t, fns["InventoryFunction"], ssm)
	invokeEveryEvent(t, fns, t1.ID)
	checkMetrics(t, fns, functionEnv(t, tpl, stack, "SubmitFunction", ssm.URL)[awsapp.EnvMetricsNamespace])
	// After the metrics' check, which counts the two tasks above.
	fullOutput(t, fns, q, ssm, sdk)
	webhooksAndStreams(t, fns, q, hooks, ssm, secret)
	logColdStarts(t, cold)
}

// functionEnv is a function's environment as deployed: the template's variables resolved
// against the stack, the SDK pointed at moto and at the SSM test server, and the Lambda
// settings the emulator reads.
func functionEnv(t *testing.T, tpl *lambdatest.Template, stack *lambdatest.Stack, id, ssmURL string) map[string]string {
	t.Helper()
	env, err := tpl.FunctionEnvironment(id, stack.Refs)
	if err != nil {
		t.Fatal(err)
	}
	timeout, _ := tpl.FunctionProperty(id, "Timeout").(int)
	memory, _ := tpl.FunctionProperty(id, "MemorySize").(int)
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
		"AWS_ENDPOINT_URL": awstest.Endpoint(t), "AWS_ENDPOINT_URL_SSM": ssmURL,
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": strconv.Itoa(timeout), "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(memory),
	} {
		env[k] = v
	}
	// The webhook receivers of these tests listen on 127.0.0.1, which only this setting allows
	// (the template never sets it), as `fleetrun serve --allow-http-webhooks` does.
	env[awsapp.EnvAllowHTTPWebhooks] = "true"
	switch id {
	case "StatusFunction":
		// Keep-alives every second, so that a stream of a few seconds shows some, and logged
		// (at debug level), so that a test can tell when one was sent.
		env[awsapp.EnvEventStreamKeepAlive] = "1s"
		env[awsapp.EnvLogLevel] = "debug"
	case "WebhookFunction":
		// The signing secret is a parameter of moto's SSM; this function runs no command.
		env["AWS_ENDPOINT_URL_SSM"] = awstest.Endpoint(t)
	}
	return env
}

// invokeEveryEvent invokes each file in events/ as it is, with the function it is for: none
// may fail. The sample ids name no stored task (except submit.json's replay, which must be
// the first task again), so the answers are 404s and dropped messages, not errors.
func invokeEveryEvent(t *testing.T, fns map[string]*lambdatest.Emulator, firstTask string) {
	entries, err := os.ReadDir(lambdatest.RepoRoot(t) + "/events")
	if err != nil {
		t.Fatal(err)
	}
	target := map[string]string{"submit": "SubmitFunction", "status": "StatusFunction", "list": "StatusFunction",
		"cancel": "CancelFunction", "executor": "ExecutorFunction", "progress": "ProgressFunction", "sweeper": "SweeperFunction",
		"webhook": "WebhookFunction"}
	for _, e := range entries {
		prefix, _, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), "-")
		fn := fns[target[prefix]]
		if fn == nil {
			t.Errorf("events/%s: no function takes it", e.Name())
			continue
		}
		body, err := fn.Invoke(t.Context(), readEvent(t, e.Name()))
		if err != nil {
			t.Errorf("events/%s: %v", e.Name(), err)
			continue
		}
		var out struct {
			StatusCode int               `json:"statusCode"`
			Body       string            `json:"body"`
			Failures   []json.RawMessage `json:"batchItemFailures"`
		}
		_ = json.Unmarshal(body, &out)
		switch {
		case out.StatusCode >= 500 || len(out.Failures) > 0:
			t.Errorf("events/%s: %s", e.Name(), body)
		case prefix == "submit" && !strings.Contains(out.Body, `"id":"`+firstTask+`"`):
			t.Errorf("events/submit.json again (same Idempotency-Key and body) gave another task: %s", out.Body)
		}
		t.Logf("events/%s → %s: %.120s", e.Name(), target[prefix], body)
	}
}

// idleEvent is an event a function handles without touching AWS, to time its cold start.
func idleEvent(t *testing.T, id string) []byte {
	var ev any
	switch id {
	case "ExecutorFunction", "WebhookFunction", "ProgressFunction":
		ev = events.SQSEvent{Records: []events.SQSMessage{}}
	case "SweeperFunction":
		// A sweep with nothing due: one Query of the index of unfinished tasks.
		ev = events.EventBridgeEvent{Version: "0", ID: "idle", Source: "aws.events", DetailType: "Scheduled Event",
			Detail: json.RawMessage(`{}`)}
	default:
		health := route(apiEvent(t, "list.json"), "/healthz", "/healthz")
		health.RequestContext.Identity.UserArn = ""
		ev = health
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type coldStart struct {
	name  string
	size  int64
	first lambdatest.Report
	warm  time.Duration
}

// measureColdStart starts a fresh emulator for bin, invokes it with event twice, and returns
// what the emulator reported. The emulator's Init Duration covers only the start of the
// process; the first invocation's Duration includes the bootstrap's own initialisation.
func measureColdStart(t *testing.T, name, bin string, env map[string]string, event []byte) coldStart {
	t.Helper()
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	em := lambdatest.Start(t, name+"-cold", bin, env)
	for range 2 {
		if _, err := em.Invoke(t.Context(), event); err != nil {
			t.Fatalf("%s cold start: %v", name, err)
		}
	}
	reports, err := em.WaitReports(2, 5*time.Second)
	if err != nil {
		t.Fatalf("%v:\n%s", err, em.Logs())
	}
	return coldStart{name: name, size: fi.Size(), first: reports[0], warm: reports[1].Duration}
}

// logColdStarts prints each function's cold start beside a minimal aws-lambda-go function's.
func logColdStarts(t *testing.T, cold []coldStart) {
	bin := lambdatest.BuildPackage(t, minimalFunction, runtime.GOARCH)
	minimal := measureColdStart(t, "minimal aws-lambda-go", bin, map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "10"}, []byte(`{}`))
	var b strings.Builder
	fmt.Fprintf(&b, "cold starts under aws-lambda-rie (%s/%s host build, stripped):\n", runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "%-24s %9s %15s %16s %10s\n", "function", "size", "Init Duration", "first invoke", "warm")
	for _, c := range append(cold, minimal) {
		fmt.Fprintf(&b, "%-24s %7.1fMiB %12.2f ms %13.2f ms %7.2f ms\n", c.name, float64(c.size)/(1<<20),
			ms(c.first.InitDuration), ms(c.first.Duration), ms(c.warm))
	}
	t.Log(b.String())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// deadLetter sends a malformed message (body) to the queue and plays the event source mapping:
// each delivery goes to the function (the executor, or WebhookFunction), which reports it
// failed, and it becomes visible again. After the redrive policy's maxReceiveCount deliveries
// SQS moves it to the dead-letter queue; the code never drops it and never retries it for
// ever.
func deadLetter(t *testing.T, q *queue, executorFn *lambdatest.Emulator, dlqURL, body string) {
	t.Helper()
	if _, err := q.c.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: &q.url, MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	deliveries := 0
	for range 10 {
		out, err := q.c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: &q.url, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		m := out.Messages[0]
		rec := events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Attributes: m.Attributes, EventSource: "aws:sqs", EventSourceARN: q.arn}
		if failed := execute(t, executorFn, rec); !slices.Equal(failed, []string{rec.MessageId}) {
			t.Fatalf("delivery %d of a malformed message: failures %v, want it reported", deliveries+1, failed)
		}
		deliveries++
		// What a visibility timeout would do, at once.
		if _, err := q.c.ChangeMessageVisibility(t.Context(), &sqs.ChangeMessageVisibilityInput{QueueUrl: &q.url,
			ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			t.Fatal(err)
		}
	}
	dlq := &queue{c: q.c, url: dlqURL}
	moved := dlq.receive(t, 2)
	if deliveries != 5 || len(moved) != 1 || moved[0].Body != body {
		t.Fatalf("a malformed message was delivered %d times and the dead-letter queue holds %v; want 5 and the message", deliveries, moved)
	}
}
