package awsflow

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withevents"
	"github.com/fleetrun/fleetrun/internal/awsapp/withinventory"
	"github.com/fleetrun/fleetrun/internal/awsapp/withlogs"
	"github.com/fleetrun/fleetrun/internal/awsapp/withs3"
	"github.com/fleetrun/fleetrun/internal/awsapp/withsqs"
	"github.com/fleetrun/fleetrun/internal/awsapp/withssm"
	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/dynamo"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/eventbridge"
	"github.com/fleetrun/fleetrun/internal/sqsqueue"
	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

const (
	scriptBucket = "fleet-scripts"
	scriptURL    = "s3://" + scriptBucket + "/ops/patch.sh"
	owner        = "arn:aws:iam::123456789012:user/alice"
	// maxReceiveCount is the executor queue's redrive policy in template.yaml.
	maxReceiveCount = 5
)

// caller is owner making a request.
var caller = task.Caller{Owner: owner}

var flowSeq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// flow is one test's fleetrun on AWS: a table, an executor queue with a dead-letter queue, an
// event bus whose rule sends every fleetrun event to a queue of its own, and the engine and
// executor wired on them.
//
// The app's SDK configuration (sdk) counts every request and carries the test's faults and
// the delay recorder; the test's own calls (creating resources, receiving messages, reading
// the table to check it) go through base, so they are neither counted nor faulted.
type flow struct {
	seq  int64
	name string

	// The test's resources.
	table, bus, rule                      string
	queueURL, queueARN, dlqURL, eventsURL string

	// base is the SDK configuration of the test's own calls; sdk is the app's.
	base, sdk aws.Config
	count     *awstest.Counter
	faults    *faults
	sent      *sentLog

	// sqs and reader make the test's own calls: receiving messages, reading the table.
	sqs    *sqs.Client
	reader *dynamo.Store
	log    *slog.Logger

	// ssm, when set before the app is wired, is an SSM test server of this test's own, used
	// instead of the shared one (a test that moves its clock or stages an outage).
	ssm *ssmtest.Server

	// The app under test, and what the pump has delivered to its executor.
	engine     *engine.Engine
	executor   func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)
	deliveries []delivery

	submits, nextDevice int
}

// newFlow creates the test's resources on moto and deletes them when the test ends. The app is
// wired by wireApp or wireWithClock.
func newFlow(t *testing.T) *flow {
	t.Helper()
	base := awstest.Config(t)
	seq := flowSeq.Add(1)
	name := fmt.Sprintf("awsflow-%d-%s", seq, unsafeName.ReplaceAllString(t.Name(), "-"))
	name = strings.TrimRight(name[:min(len(name), 60)], "-")
	f := &flow{seq: seq, name: name, base: base, count: new(awstest.Counter), faults: new(faults), sent: new(sentLog),
		sqs: sqs.NewFromConfig(base),
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	f.sdk = base.Copy()
	f.sdk.APIOptions = append(slices.Clone(base.APIOptions), f.count.Register, f.faults.register, f.sent.register)

	ctx := context.Background()
	db := dynamodb.NewFromConfig(base)
	f.table = name
	if err := dynamo.EnsureTable(ctx, db, f.table); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(f.table)})
	})
	f.reader = dynamo.New(db, f.table, dynamo.Options{Logger: f.log})

	var dlqARN string
	f.dlqURL, dlqARN = f.createQueue(t, name+"-dlq", nil)
	policy, _ := json.Marshal(map[string]string{"deadLetterTargetArn": dlqARN, "maxReceiveCount": fmt.Sprint(maxReceiveCount)})
	f.queueURL, f.queueARN = f.createQueue(t, name+"-executor",
		map[string]string{string(sqstypes.QueueAttributeNameRedrivePolicy): string(policy)})
	var eventsARN string
	f.eventsURL, eventsARN = f.createQueue(t, name+"-events", nil)

	eb := awseventbridge.NewFromConfig(base)
	f.bus, f.rule = name, name+"-finished"
	if _, err := eb.CreateEventBus(ctx, &awseventbridge.CreateEventBusInput{Name: aws.String(f.bus)}); err != nil {
		t.Fatalf("create event bus: %v", err)
	}
	pattern, _ := json.Marshal(map[string][]string{"source": {eventbridge.Source}})
	if _, err := eb.PutRule(ctx, &awseventbridge.PutRuleInput{Name: aws.String(f.rule), EventBusName: aws.String(f.bus),
		EventPattern: aws.String(string(pattern))}); err != nil {
		t.Fatalf("put rule: %v", err)
	}
	if _, err := eb.PutTargets(ctx, &awseventbridge.PutTargetsInput{Rule: aws.String(f.rule), EventBusName: aws.String(f.bus),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(eventsARN)}}}); err != nil {
		t.Fatalf("put targets: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = eb.RemoveTargets(ctx, &awseventbridge.RemoveTargetsInput{Rule: aws.String(f.rule), EventBusName: aws.String(f.bus), Ids: []string{"queue"}})
		_, _ = eb.DeleteRule(ctx, &awseventbridge.DeleteRuleInput{Name: aws.String(f.rule), EventBusName: aws.String(f.bus)})
		_, _ = eb.DeleteEventBus(ctx, &awseventbridge.DeleteEventBusInput{Name: aws.String(f.bus)})
	})
	return f
}

// createQueue creates a queue that is deleted when the test ends, and returns its URL and ARN.
func (f *flow) createQueue(t *testing.T, name string, attrs map[string]string) (url, arn string) {
	t.Helper()
	ctx := context.Background()
	q, err := f.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	t.Cleanup(func() { _, _ = f.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) })
	out, err := f.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("arn of queue %s: %v", name, err)
	}
	return aws.ToString(q.QueueUrl), out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
}

// config reads the functions' configuration from the environment the SAM template would give
// ExecutorFunction, through the functions' own loader; more adds or replaces variables.
func (f *flow) config(t *testing.T, more ...map[string]string) awsapp.Config {
	t.Helper()
	env := map[string]string{
		awsapp.EnvTableName:            f.table,
		awsapp.EnvQueueURL:             f.queueURL,
		awsapp.EnvEventBusName:         f.bus,
		awsapp.EnvAllowedScriptBuckets: scriptBucket,
		awsapp.EnvDocumentName:         ssmtest.RemoteScriptDocument,
	}
	for _, m := range more {
		maps.Copy(env, m)
	}
	cfg, err := awsapp.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		awsapp.EnvTableName, awsapp.EnvQueueURL, awsapp.EnvAllowedScriptBuckets)
	if err != nil {
		t.Fatalf("load configuration: %v", err)
	}
	return cfg
}

// services are every service a function names: the app under test plays each function.
var services = []awsapp.Service{withsqs.Queues, withssm.Runner, withevents.Publisher, withs3.Output, withlogs.Follow, withinventory.Inventory}

// wireApp wires the app exactly as the functions do, with awsapp.New, from the environment
// the template gives the functions and more variables.
func (f *flow) wireApp(t *testing.T, more ...map[string]string) *awsapp.App {
	t.Helper()
	app := awsapp.New(f.config(t, more...), f.sdk, f.log, nil, services...)
	f.engine, f.executor = app.Engine, app.Executor()
	return app
}

// wireWithClock wires the same adapters as awsapp.New, with the same configuration, and the
// executor as App.Executor does, except that every clock (engine, store, runner, publisher)
// reads now. awsapp.New takes no clock, since production has one; tests that move time past a
// deadline need this copy of its wiring. The engine's Sweep is SweeperFunction's.
func (f *flow) wireWithClock(t *testing.T, now func() time.Time) {
	t.Helper()
	cfg := f.config(t)
	store := dynamo.New(dynamodb.NewFromConfig(f.sdk), cfg.TableName, dynamo.Options{Logger: f.log, Now: now, Retention: cfg.Retention})
	ssmClient := ssm.NewFromConfig(f.sdk)
	if f.ssm != nil {
		ssmClient = ssm.NewFromConfig(f.sdk, func(o *ssm.Options) { o.BaseEndpoint = aws.String(f.ssm.URL) })
	}
	runner := ssmrun.New(ssmrun.Config{API: ssmClient, CommandLog: store, Devices: store, DocumentName: cfg.DocumentName,
		AllowedBuckets: cfg.AllowedScriptBuckets, Logger: f.log, Now: now})
	f.engine = engine.New(engine.Config{
		Store:  store,
		Queue:  sqsqueue.New(sqs.NewFromConfig(f.sdk), cfg.QueueURL),
		Runner: runner,
		Publisher: eventbridge.New(awseventbridge.NewFromConfig(f.sdk), cfg.EventBusName,
			eventbridge.Options{Logger: f.log, Now: now}),
		Rules:     task.Rules{DeviceID: task.ManagedNodeID, CheckScript: ssmcmd.CheckScript(cfg.AllowedScriptBuckets)},
		Retention: cfg.Retention,
		Leases:    store,
		Logger:    f.log,
		Now:       now,
	})
	f.executor = func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-awsapp.ExecutorReserve))
			defer cancel()
		}
		return sqsqueue.HandleBatch(ctx, ev, f.engine.Handle, f.log, nil), nil
	}
}

// devices returns n new SSM managed node ids that belong to this test alone, so that scripts
// set on the shared SSM server for them affect no other test or task.
func (f *flow) devices(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("i-%05x%012x", f.seq, f.nextDevice)
		f.nextDevice++
	}
	return out
}

// submit submits a task on ids with an Idempotency-Key, as the API does, after edit changes
// the request.
func (f *flow) submit(t *testing.T, ids []string, edit ...func(*task.Draft)) *task.Task {
	t.Helper()
	req := task.Draft{DeviceIDs: ids, ScriptURL: scriptURL, Args: []string{"--dry-run", "it's"}, TimeoutSeconds: new(600)}
	for _, e := range edit {
		e(&req)
	}
	f.submits++
	tk, created, err := f.engine.Submit(t.Context(), engine.Submission{Owner: owner, Draft: req,
		IdempotencyKey: fmt.Sprintf("%s-%d", f.name, f.submits), RequestHash: fmt.Sprintf("hash-%d", f.submits)})
	if err != nil || !created {
		t.Fatalf("Submit: created %v, %v", created, err)
	}
	return tk
}

// task reads a task from the table, outside the app's counted client.
func (f *flow) task(t *testing.T, id string) *task.Task {
	t.Helper()
	tk, err := f.reader.GetTask(context.Background(), id)
	if err != nil {
		t.Fatalf("read task %s: %v", id, err)
	}
	return tk
}

// deviceStates reads every device of a task from the table.
func (f *flow) deviceStates(t *testing.T, id string) map[string]*task.Device {
	t.Helper()
	out := map[string]*task.Device{}
	cursor := ""
	for {
		page, err := f.reader.ListDevices(context.Background(), id, task.DeviceQuery{Limit: task.MaxPageSize, Cursor: cursor})
		if err != nil {
			t.Fatalf("list devices of %s: %v", id, err)
		}
		for _, d := range page.Devices {
			out[d.ID] = d
		}
		if cursor = page.Next; cursor == "" {
			return out
		}
	}
}

// server is the SSM server the app talks to: the test's own, or the shared one.
func (f *flow) server() *ssmtest.Server {
	if f.ssm != nil {
		return f.ssm
	}
	return ssmServer
}

// commands returns the commands the shared SSM server accepted for a task, in the order sent.
func commands(taskID string) []ssmtest.Command {
	return commandsOn(ssmServer, taskID)
}

// commandsOn returns the commands srv accepted for a task, in the order sent.
func commandsOn(srv *ssmtest.Server, taskID string) []ssmtest.Command {
	var out []ssmtest.Command
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c.Comment, "fleetrun task "+taskID+" batch ") {
			out = append(out, c)
		}
	}
	return out
}

// checkBatches checks that a task's devices were sent exactly once each, in the batches the
// runner documents: batch n is ids[n*50:(n+1)*50], with its own comment.
func checkBatches(t *testing.T, taskID string, ids []string) {
	t.Helper()
	cmds := commands(taskID)
	want := ssmrun.Batches(ids)
	if len(cmds) != len(want) {
		t.Fatalf("SSM accepted %d commands for the task, want %d", len(cmds), len(want))
	}
	byComment := map[string]ssmtest.Command{}
	for _, c := range cmds {
		if _, dup := byComment[c.Comment]; dup {
			t.Errorf("%q was sent twice", c.Comment)
		}
		byComment[c.Comment] = c
	}
	for n, batch := range want {
		c, ok := byComment[ssmrun.Comment(taskID, n)]
		if !ok {
			t.Errorf("batch %d was never sent", n)
			continue
		}
		if !slices.Equal(c.InstanceIDs, batch) {
			t.Errorf("batch %d went to %d devices %v…, want %d devices %v…", n, len(c.InstanceIDs), c.InstanceIDs[:1], len(batch), batch[:1])
		}
	}
}

// finished waits for want "Task Finished" events delivered by the rule to the events queue,
// checks their envelope, and returns their details. It then takes whatever else arrived, so
// that a duplicate shows up in the count.
func (f *flow) finished(t *testing.T, want int) []eventbridge.Detail {
	t.Helper()
	var got []eventbridge.Detail
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := f.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(f.eventsURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			t.Fatalf("receive events: %v", err)
		}
		for _, m := range out.Messages {
			var ev events.EventBridgeEvent
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				t.Fatalf("the rule delivered something that is not an event: %v", err)
			}
			if ev.Source != eventbridge.Source || ev.DetailType != eventbridge.DetailType {
				t.Errorf("event envelope: source %q detail-type %q", ev.Source, ev.DetailType)
			}
			var d eventbridge.Detail
			if err := json.Unmarshal(ev.Detail, &d); err != nil {
				t.Fatalf("event detail: %v", err)
			}
			got = append(got, d)
			_, _ = f.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(f.eventsURL), ReceiptHandle: m.ReceiptHandle})
		}
		if len(out.Messages) == 0 && (len(got) >= want || time.Now().After(deadline)) {
			return got
		}
		if len(out.Messages) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// noDeadLetters checks that no executor message ended in the dead-letter queue.
func (f *flow) noDeadLetters(t *testing.T) {
	t.Helper()
	out, err := f.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(f.dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
	if err != nil {
		t.Fatalf("receive from the dead-letter queue: %v", err)
	}
	for _, m := range out.Messages {
		t.Errorf("message in the dead-letter queue: %s", aws.ToString(m.Body))
	}
}
