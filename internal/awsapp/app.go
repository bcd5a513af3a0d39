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
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/fleetrun/fleetrun/internal/awsenv"
	"github.com/fleetrun/fleetrun/internal/awsretry"
	"github.com/fleetrun/fleetrun/internal/dynamo"
	"github.com/fleetrun/fleetrun/internal/emf"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/httpapi"
	"github.com/fleetrun/fleetrun/internal/lambdahttp"
	"github.com/fleetrun/fleetrun/internal/ssmcmd"
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
	// SDK is the AWS configuration every client of the function is made from.
	SDK aws.Config
	// Metrics writes the function's metrics as embedded metric format lines.
	Metrics *emf.Recorder
	Store   *dynamo.Store
	Engine  *engine.Engine
	// Parts are the adapters of the other services the function calls.
	Parts Parts
	// secret is the webhook signing secret, read on the first delivery.
	secret secretOnce
}

// Parts are the adapters of the AWS services beyond DynamoDB, which every function uses. The
// Services a function's main names fill them in; a part left nil is a service the function
// never calls, and the engine gets a stand-in that fails if it ever does, instead of a nil to
// panic on. Naming only the services a function calls is what keeps the SDK clients of the
// others out of its binary and out of its cold start.
type Parts struct {
	// Queue sends the executor's messages (SQS).
	Queue engine.Queue
	// HandleQueue handles a batch of the executor's queue, retrying failed messages after a
	// backoff (SQS).
	HandleQueue func(context.Context, events.SQSEvent, func(context.Context, engine.Message) error) events.SQSEventResponse
	// Webhooks puts webhook jobs on the webhook queue (SQS); nil also when the function has no
	// WEBHOOK_QUEUE_URL, which turns webhooks off.
	Webhooks engine.WebhookQueue
	// HandleWebhooks handles a batch of the webhook queue (SQS).
	HandleWebhooks func(context.Context, events.SQSEvent, func(context.Context, task.WebhookJob) error) events.SQSEventResponse
	// Runner runs tasks with SSM Run Command and reads the invocations SSM's events name.
	Runner Runner
	// Secret reads the webhook signing secret (an SSM parameter); only WebhookFunction signs.
	Secret func(context.Context) (webhook.Secret, error)
	// Publisher publishes the "Task Finished" events (EventBridge).
	Publisher engine.Publisher
	// Output serves the devices' full output from Config.OutputBucket (S3).
	Output httpapi.OutputStore
	// Follow reads the commands' output while they run, where the stack sends it to
	// Config.OutputLogGroup (CloudWatch Logs).
	Follow httpapi.OutputFollower
	// Inventory resolves a submit's targets and lists the managed nodes (SSM and EC2).
	Inventory engine.Inventory
}

// Runner is SSM Run Command as the functions use it; *ssmrun.Runner implements it.
type Runner interface {
	engine.PolledRunner
	// Invocations reads the invocations of a command on the given devices, as SSM's events
	// name them, and returns the update each means by device id; devices SSM has not started
	// are left out.
	Invocations(ctx context.Context, commandID string, instanceIDs []string) (map[string]task.DeviceUpdate, error)
}

// Service wires the adapters of one AWS service into an App being built: it sets Parts from
// the App's SDK configuration, Config, Store, Metrics and Log. The packages under awsapp
// provide them (withsqs, withssm, withevents, withs3, withlogs, withinventory).
type Service func(*App)

// New wires an App from cfg, the SDK configuration sdk (awsenv's), and the services the
// function calls besides DynamoDB. It makes no AWS call. Metrics are written to metricsOut as
// CloudWatch embedded metric format lines in the namespace cfg.MetricsNamespace; nil records
// none.
func New(cfg Config, sdk aws.Config, log *slog.Logger, metricsOut io.Writer, services ...Service) *App {
	if metricsOut == nil {
		metricsOut = io.Discard
	}
	app := &App{Config: cfg, Log: log, SDK: sdk,
		Metrics: emf.New(emf.Config{Out: metricsOut, Namespace: cfg.MetricsNamespace}),
		Store:   dynamo.New(dynamodb.NewFromConfig(sdk), cfg.TableName, dynamo.Options{Logger: log, Retention: cfg.Retention}),
	}
	for _, s := range services {
		s(app)
	}
	p := app.Parts
	var queue engine.Queue = missing{"executor queue (SQS)"}
	if p.Queue != nil {
		queue = p.Queue
	}
	var runner Runner = missing{"SSM runner"}
	if p.Runner != nil {
		runner = p.Runner
	}
	var publisher engine.Publisher = missing{"EventBridge publisher"}
	if p.Publisher != nil {
		publisher = p.Publisher
	}
	rules := task.Rules{DeviceID: task.ManagedNodeID, CheckScript: ssmcmd.CheckScript(cfg.AllowedScriptBuckets)}
	var hooks engine.Webhooks
	if p.Webhooks != nil {
		policy := webhook.Policy{AllowLoopback: cfg.AllowHTTPWebhooks}
		rules.CheckWebhookURL = policy.CheckURL
		hooks = engine.Webhooks{Queue: p.Webhooks, Payload: httpapi.WebhookPayload(cfg.OutputBucket != "")}
		if p.Secret != nil {
			app.secret.read = p.Secret
			hooks.Sender = &app.secret
			app.secret.policy = policy
		}
	}
	app.Engine = engine.New(engine.Config{
		Store:     app.Store,
		Queue:     queue,
		Runner:    runner,
		Publisher: publisher,
		Metrics:   app.Metrics,
		Inventory: p.Inventory,
		Webhooks:  hooks,
		Rules:     rules,
		Retention: cfg.Retention,
		Leases:    app.Store,
		Logger:    log,
	})
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
// OutputFunction, InventoryFunction, CancelFunction): the same httpapi handler `fleetrun serve` uses, behind the REST API
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
		// Every API function links the devices' output where the stack keeps it, whichever
		// function serves the output route: only OutputFunction links S3.
		OutputLinks: a.Config.OutputBucket != "",
		Logger:      a.Log,
	}
	if a.Parts.Output != nil {
		cfg.Output = a.Parts.Output
	}
	if a.Parts.Follow != nil {
		cfg.Follow = a.Parts.Follow
	}
	h := httpapi.New(cfg)
	return lambdahttp.Handler(h, lambdahttp.Options{Streamed: StreamedRoutes, Logger: a.Log})
}

// Executor returns the handler of ExecutorFunction: each SQS record is one engine message,
// handled in order; the records that failed are reported as batch item failures, so SQS
// retries only them and moves a message that keeps failing to the dead-letter queue. It
// never sleeps: a poll that is not due yet is a message sent with a delay.
func (a *App) Executor() func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if a.Parts.HandleQueue == nil {
			return events.SQSEventResponse{}, errors.New("awsapp: the executor's function does not wire SQS")
		}
		ctx, cancel := reserve(ctx)
		defer cancel()
		return a.Parts.HandleQueue(ctx, ev, a.Engine.Handle), nil
	}
}

// Webhooks returns the handler of WebhookFunction, the consumer of the webhook queue: each
// record is one webhook job. A job not yet due (SQS delays a message 15 minutes at most) is
// put back for the rest of its wait; a due one is attempted (engine.DeliverWebhook), and put
// back for its retry when there is one. A record whose job could not be attempted or put back
// is reported failed, and comes back; a malformed one reaches the dead-letter queue.
func (a *App) Webhooks() func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if a.Parts.HandleWebhooks == nil {
			return events.SQSEventResponse{}, errors.New("awsapp: the webhook function does not wire SQS")
		}
		ctx, cancel := reserve(ctx)
		defer cancel()
		return a.Parts.HandleWebhooks(ctx, ev, a.deliver), nil
	}
}

// earlyDelivery is how much sooner than its time a job is attempted rather than put back:
// SQS delays in whole seconds.
const earlyDelivery = time.Second

// deliver handles one job of the webhook queue. The signing secret is read before the first
// attempt; a failure to read it fails the message, which comes back, with no attempt made.
func (a *App) deliver(ctx context.Context, job task.WebhookJob) error {
	if a.Parts.Webhooks == nil {
		return fmt.Errorf("awsapp: webhook %s: %w", job.ID, errNoWebhookQueue)
	}
	if time.Until(job.NextAt) > earlyDelivery {
		return a.Parts.Webhooks.Put(ctx, job)
	}
	if err := a.secret.load(ctx); err != nil {
		return fmt.Errorf("awsapp: webhook %s: %w", job.ID, err)
	}
	next, err := a.Engine.DeliverWebhook(ctx, job)
	if err != nil || next == nil {
		return err
	}
	return a.Parts.Webhooks.Put(context.WithoutCancel(ctx), *next)
}

var errNoWebhookQueue = errors.New("this function has no WEBHOOK_QUEUE_URL")

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

// Start is a function's whole main: Setup with the services the function calls, then
// lambda.Start with the handler handler picks from the App. A configuration error is printed
// on stderr, prefixed with name, and ends the process with status 1, before any invocation.
func Start(name string, handler func(*App) any, services []Service, required ...string) {
	app, err := Setup(required, services...)
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
	lambda.Start(handler(app))
}

// Setup is what every function's main does before lambda.Start: read the configuration from
// the environment (the variables named in required must be set), build the SDK configuration
// from the environment Lambda provides (awsenv, which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>, with the one retryer and HTTP client of every client), and wire
// the App and its services with a JSON logger and the metric lines on stdout. It makes no AWS
// call: whatever can wait for the first invocation does.
func Setup(required []string, services ...Service) (*App, error) {
	cfg, err := Load(os.LookupEnv, required...)
	if err != nil {
		return nil, err
	}
	sdk, err := awsenv.FromEnvironment(awsretry.Options{})
	if err != nil {
		return nil, fmt.Errorf("load the AWS configuration: %w", err)
	}
	// The log and the metric lines share standard output, one whole line per write.
	out := &lineWriter{w: os.Stdout}
	return New(cfg, sdk, NewLogger(out, cfg.LogLevel), out, services...), nil
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
