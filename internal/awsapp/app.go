package awsapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/awsretry"
	"github.com/fleetrun/fleetrun/internal/cwoutput"
	"github.com/fleetrun/fleetrun/internal/dynamo"
	"github.com/fleetrun/fleetrun/internal/emf"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/eventbridge"
	"github.com/fleetrun/fleetrun/internal/httpapi"
	"github.com/fleetrun/fleetrun/internal/lambdahttp"
	"github.com/fleetrun/fleetrun/internal/s3output"
	"github.com/fleetrun/fleetrun/internal/sqsqueue"
	"github.com/fleetrun/fleetrun/internal/ssminventory"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/watch"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// StatusPollInterval is how often a long-poll on Lambda re-reads the task: the write that ends
// it happens in another function, so there is nothing to wake it but a read.
const StatusPollInterval = time.Second

// ExecutorReserve is how long before the function's deadline the executor stops handling
// messages: enough to return the batch response, so that SQS learns which messages failed
// instead of retrying the whole batch after a timeout.
const ExecutorReserve = 2 * time.Second

// App is fleetrun on AWS for one function: the adapters and the engine, wired once per cold
// start and shared by every invocation.
type App struct {
	Config Config
	Log    *slog.Logger
	Store  *dynamo.Store
	Engine *engine.Engine
	Runner *ssmrun.Runner
	// Output serves full device output from Config.OutputBucket; nil without one.
	Output *s3output.Store
	// retry brings a failed executor message's next delivery forward; nil without a queue.
	retry *sqsqueue.Retry
	// Follow reads the commands' output from CloudWatch Logs while they run, nil unless the
	// stack sends it there (Config.OutputLogGroup).
	Follow *cwoutput.Output
	// hooks is the webhook queue, and hookRetry brings a failed webhook message's next
	// delivery forward; nil without one.
	hooks     *sqsqueue.WebhookQueue
	hookRetry *sqsqueue.Retry
}

// New wires an App from cfg and the SDK configuration sdk (config.LoadDefaultConfig, which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>). It makes no AWS call. Metrics are
// written to metricsOut as CloudWatch embedded metric format lines in the namespace
// cfg.MetricsNamespace; nil records none.
func New(cfg Config, sdk aws.Config, log *slog.Logger, metricsOut io.Writer) *App {
	if metricsOut == nil {
		metricsOut = io.Discard
	}
	metrics := emf.New(emf.Config{Out: metricsOut, Namespace: cfg.MetricsNamespace})
	store := dynamo.New(dynamodb.NewFromConfig(sdk), cfg.TableName, dynamo.Options{Logger: log, Retention: cfg.Retention})
	ssmClient := ssm.NewFromConfig(sdk, ssmrun.ObserveThrottles(metrics))
	runner := ssmrun.New(ssmrun.Config{
		API:            ssmClient,
		CommandLog:     store,
		Devices:        store,
		OutputLogGroup: cfg.OutputLogGroup,
		DocumentName:   cfg.DocumentName,
		AllowedBuckets: cfg.AllowedScriptBuckets,
		OutputBucket:   cfg.OutputBucket,
		Logger:         log,
	})
	app := &App{Config: cfg, Log: log, Store: store, Runner: runner}
	sqsClient := sqs.NewFromConfig(sdk)
	var queue engine.Queue = noQueue{}
	if cfg.QueueURL != "" {
		queue = sqsqueue.New(sqsClient, cfg.QueueURL)
		app.retry = &sqsqueue.Retry{API: sqsClient, QueueURL: cfg.QueueURL}
	}
	rules := task.Rules{DeviceID: task.ManagedNodeID, CheckScript: ssmrun.CheckScript(cfg.AllowedScriptBuckets)}
	var hooks engine.Webhooks
	if cfg.WebhookQueueURL != "" {
		policy := webhook.Policy{AllowLoopback: cfg.AllowHTTPWebhooks}
		rules.CheckWebhookURL = policy.CheckURL
		app.hooks = sqsqueue.NewWebhookQueue(sqsClient, cfg.WebhookQueueURL, nil)
		app.hookRetry = &sqsqueue.Retry{API: sqsClient, QueueURL: cfg.WebhookQueueURL}
		hooks = engine.Webhooks{Queue: app.hooks, Payload: httpapi.WebhookPayload(cfg.OutputBucket != "")}
		if !cfg.WebhookSecret.IsZero() {
			hooks.Sender = webhook.NewSender(webhook.SenderConfig{Secret: cfg.WebhookSecret, Policy: policy})
		}
	}
	app.Engine = engine.New(engine.Config{
		Store:     store,
		Queue:     queue,
		Runner:    runner,
		Publisher: eventbridge.New(awseventbridge.NewFromConfig(sdk), cfg.EventBusName, eventbridge.Options{Logger: log}),
		Inventory: ssminventory.New(ssminventory.Config{SSM: ssmClient, EC2: ec2.NewFromConfig(sdk), Logger: log}),
		Metrics:   metrics,
		Webhooks:  hooks,
		Rules:     rules,
		Retention: cfg.Retention,
		Leases:    store,
		Logger:    log,
	})
	if cfg.OutputLogGroup != "" {
		app.Follow = cwoutput.New(cwoutput.Config{API: cloudwatchlogs.NewFromConfig(sdk), Devices: store, Group: cfg.OutputLogGroup})
	}
	if cfg.OutputBucket != "" {
		client := s3.NewFromConfig(sdk)
		app.Output = s3output.New(client, s3.NewPresignClient(client), cfg.OutputBucket, s3output.Options{Key: runner.OutputKey})
	}
	return app
}

// StreamedRoutes are the API's resources whose integration streams its response
// (ResponseTransferMode RESPONSE_STREAM in the template), in order: the task list's event
// stream, a device's output, which a follow streams as CloudWatch Logs receives it, and a
// task's event stream.
var StreamedRoutes = []string{"/tasks/events", "/tasks/{id}/devices/{deviceId}/output", "/tasks/{id}/events"}

// FollowWait is how long a follow waits for its device to end where its output cannot be
// streamed (no CloudWatch output), before answering 409: a streamed answer that sends nothing
// is closed by API Gateway after 5 minutes, and a short wait keeps the function's time short.
const FollowWait = 20 * time.Second

// HTTP returns the handler of the API functions (SubmitFunction, StatusFunction,
// CancelFunction): the same httpapi handler `fleetrun serve` uses, behind the REST API
// adapter, which streams StreamedRoutes. The owner is the part of the caller's identity that
// Config.OwnerScope names, AdminPrincipals see every task, and long-polls and event streams
// re-read the store.
func (a *App) HTTP() func(context.Context, events.APIGatewayProxyRequest) (any, error) {
	id := lambdahttp.Identity{Scope: a.Config.OwnerScope, Admins: a.Config.AdminPrincipals}
	cfg := httpapi.Config{
		Engine:    a.Engine,
		Owner:     id.Owner,
		Admin:     id.Admin,
		Watcher:   watch.Poller{Store: a.Store, Interval: StatusPollInterval},
		BaseURL:   lambdahttp.BaseURL,
		KeepAlive: a.Config.EventStreamKeepAlive,
		// A followed output is read every second, from CloudWatch Logs where the commands
		// send their output there; elsewhere it is answered once its device has ended.
		FollowInterval: StatusPollInterval,
		FollowWait:     FollowWait,
		Logger:         a.Log,
	}
	if a.Output != nil {
		cfg.Output = a.Output
	}
	if a.Follow != nil {
		cfg.Follow = a.Follow
	}
	h := httpapi.New(cfg)
	return lambdahttp.Handler(h, lambdahttp.Options{Streamed: StreamedRoutes, Logger: a.Log})
}

// Webhooks returns the handler of WebhookFunction, the consumer of the webhook queue: each
// record is one webhook job. A job not yet due (SQS delays a message 15 minutes at most) is
// put back for the rest of its wait; a due one is attempted (engine.DeliverWebhook), and put
// back for its retry when there is one. A record whose job could not be attempted or put back
// is reported failed, and comes back; a malformed one reaches the dead-letter queue.
func (a *App) Webhooks() func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		ctx, cancel := reserve(ctx)
		defer cancel()
		return sqsqueue.HandleWebhooks(ctx, ev, a.deliver, a.Log, a.hookRetry), nil
	}
}

// earlyDelivery is how much sooner than its time a job is attempted rather than put back:
// SQS delays in whole seconds.
const earlyDelivery = time.Second

// deliver handles one job of the webhook queue.
func (a *App) deliver(ctx context.Context, job task.WebhookJob) error {
	if a.hooks == nil {
		return fmt.Errorf("awsapp: webhook %s: %w", job.ID, errNoWebhookQueue)
	}
	if time.Until(job.NextAt) > earlyDelivery {
		return a.hooks.Put(ctx, job)
	}
	next, err := a.Engine.DeliverWebhook(ctx, job)
	if err != nil || next == nil {
		return err
	}
	return a.hooks.Put(context.WithoutCancel(ctx), *next)
}

var errNoWebhookQueue = errors.New("this function has no WEBHOOK_QUEUE_URL")

// Executor returns the handler of ExecutorFunction: each SQS record is one engine message,
// handled in order; the records that failed are reported as batch item failures, so SQS
// retries only them and moves a message that keeps failing to the dead-letter queue. It
// never sleeps: a poll that is not due yet is a message sent with a delay.
func (a *App) Executor() func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return executor(a.Engine.Handle, a.Log, a.retry)
}

// executor is Executor's handler around handle: each batch runs under a deadline
// ExecutorReserve before the function's own, and a message that failed is delivered again
// after retry's backoff.
func executor(handle func(context.Context, engine.Message) error, log *slog.Logger, retry *sqsqueue.Retry) func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		ctx, cancel := reserve(ctx)
		defer cancel()
		return sqsqueue.HandleBatch(ctx, ev, handle, log, retry), nil
	}
}

// reserve ends ctx ExecutorReserve before the function's deadline, so that a handler that
// stops there still answers in time.
func reserve(ctx context.Context) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, deadline.Add(-ExecutorReserve))
	}
	return context.WithCancel(ctx)
}

// Sweeper returns the handler of SweeperFunction, which an EventBridge schedule invokes every
// minute: engine.Sweep ends or re-drives every unfinished task whose lease has run out. The
// event's content does not matter. An error (a task it could not handle) fails the invocation
// so that it shows in the function's errors; the task keeps its lease, and the next sweep
// takes it again.
func (a *App) Sweeper() func(context.Context, events.EventBridgeEvent) error {
	return func(ctx context.Context, _ events.EventBridgeEvent) error {
		ctx, cancel := reserve(ctx)
		defer cancel()
		n, err := a.Engine.Sweep(ctx)
		if n > 0 {
			a.Log.InfoContext(ctx, "sweep handled tasks whose lease ran out", "tasks", n)
		}
		return err
	}
}

// noQueue stands in for the queue in a function that has no QUEUE_URL (StatusFunction), whose
// requests never send a message; if one ever does, the request fails instead of panicking.
type noQueue struct{}

func (noQueue) Send(_ context.Context, m engine.Message, _ time.Duration) error {
	return fmt.Errorf("awsapp: %s message for %s: %w", m.Action, m.TaskID, errNoQueue)
}

var errNoQueue = errors.New("this function has no QUEUE_URL")

// Start is a function's whole main: Setup, then lambda.Start with the handler handler picks from
// the App. A configuration error is printed on stderr, prefixed with name, and ends the process
// with status 1, before any invocation.
func Start(name string, handler func(*App) any, required ...string) {
	app, err := Setup(context.Background(), required...)
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
	lambda.Start(handler(app))
}

// Setup is what every function's main does before lambda.Start: read the configuration from
// the environment (the variables named in required must be set), load the SDK configuration
// (awsretry.LoadConfig: config.LoadDefaultConfig, which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>, with the one retryer and HTTP client of every client), and wire the App with a JSON logger and the
// metric lines on stdout.
func Setup(ctx context.Context, required ...string) (*App, error) {
	cfg, err := Load(os.LookupEnv, required...)
	if err != nil {
		return nil, err
	}
	sdk, err := awsretry.LoadConfig(ctx, awsretry.Options{})
	if err != nil {
		return nil, fmt.Errorf("load the AWS configuration: %w", err)
	}
	if cfg.WebhookSecretParameter != "" {
		if cfg.WebhookSecret, err = webhookSecret(ctx, ssm.NewFromConfig(sdk), cfg.WebhookSecretParameter); err != nil {
			return nil, err
		}
	}
	// The log and the metric lines share standard output, one whole line per write.
	out := &lineWriter{w: os.Stdout}
	return New(cfg, sdk, NewLogger(out, cfg.LogLevel), out), nil
}

// lineWriter serialises writes to w, so that lines written by the logger and by the metrics
// recorder, each in one Write, never interleave.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// ParameterAPI is the part of the SSM client webhookSecret uses; *ssm.Client satisfies it.
type ParameterAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// webhookSecret reads the webhook signing secret from the SSM parameter name, decrypted: once
// per cold start, so a rotated secret reaches the function with its next instances.
func webhookSecret(ctx context.Context, api ParameterAPI, name string) (webhook.Secret, error) {
	out, err := api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return webhook.Secret{}, fmt.Errorf("read the webhook secret from the SSM parameter %s: %w", name, err)
	}
	if out.Parameter == nil {
		return webhook.Secret{}, fmt.Errorf("the SSM parameter %s has no value", name)
	}
	secret, err := webhook.ParseSecret(aws.ToString(out.Parameter.Value))
	if err != nil {
		return webhook.Secret{}, fmt.Errorf("the SSM parameter %s: %w", name, err)
	}
	return secret, nil
}
