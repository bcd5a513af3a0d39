// Package serve is `fleetrun serve`: the single-machine home of fleetrun, with the embedded
// store, an in-process queue and the local runner behind the same HTTP API, engine and state
// machine as on AWS.
package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/fleetrun/fleetrun/internal/dashboard"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/httpapi"
	"github.com/fleetrun/fleetrun/internal/inventoryfile"
	"github.com/fleetrun/fleetrun/internal/localqueue"
	"github.com/fleetrun/fleetrun/internal/localrun"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/prommetrics"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/watch"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// Main runs `fleetrun serve` with args (the words after "serve") until ctx ends, and returns the
// process exit code. It prints "listening on http://ADDR" to stdout once the server accepts
// connections. getenv reads the environment (os.Getenv in the binary).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "fleetrun serve:", err)
		return 2
	}
	// The binary's children are all the runner's, so it may reap every one of them.
	cfg.Subreaper = true
	ready := func(addr string) { fmt.Fprintf(stdout, "listening on %s\n", addr) }
	log, logs := newLogger(stderr, cfg)
	err = Run(ctx, cfg, log, ready)
	_ = logs.Flush()
	if err != nil {
		fmt.Fprintln(stderr, "fleetrun serve:", err)
		return 1
	}
	return 0
}

// newLogger returns the server's logger, writing to w through a buffer the caller flushes
// when the server has stopped.
func newLogger(w io.Writer, cfg Config) (*slog.Logger, *bufferedLog) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	logs := newBufferedLog(w)
	var h slog.Handler = slog.NewTextHandler(logs, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(logs, opts)
	}
	return slog.New(flushOnWarn{h, logs}), logs
}

// Run wires the embedded store, the queue, the runner, the engine and the HTTP API, resumes
// unfinished tasks, and serves until ctx ends. Then it stops accepting requests, stops every
// running script (the children are not orphaned: the next start marks those devices failed,
// see localrun), and closes the store.
//
// Before anything else it kills what servers that died on this machine left running
// (localrun.StopLeftovers), whatever their data directory.
//
// ready, when not nil, is called with the server's base URL once it accepts connections.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(baseURL string)) error {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	root, err := filepath.Abs(cfg.ScriptRoot)
	if err != nil {
		return fmt.Errorf("script root: %w", err)
	}
	if n, err := localrun.StopLeftovers(log); err != nil {
		log.Warn("looking for what dead servers left running failed", "err", err)
	} else if n > 0 {
		log.Warn("killed what servers that died left running", "count", n)
	}
	store, err := localstore.Open(filepath.Join(cfg.DataDir, "fleetrun.db"), localstore.Options{Now: cfg.Now, Logger: log})
	if err != nil {
		return err
	}
	defer store.Close()
	active, err := store.Active(ctx)
	if err != nil {
		return fmt.Errorf("list unfinished tasks: %w", err)
	}

	runner, err := localrun.New(localrun.Config{
		ScriptRoot: root,
		DataDir:    cfg.DataDir,
		Devices:    store,
		Grace:      cfg.Grace,
		MaxProcs:   cfg.MaxProcs,
		Subreaper:  cfg.Subreaper,
		NoCgroups:  cfg.Cgroups == "off",
		Now:        cfg.Now,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	var inventory engine.Inventory
	if cfg.Inventory != "" {
		inv, err := inventoryfile.Open(cfg.Inventory, inventoryfile.Options{Logger: log})
		if err != nil {
			return err
		}
		inventory = inv
		stopReloads := reloadOnHangup(inv, log)
		defer stopReloads()
	}
	broker := watch.NewBroker()
	metrics := prommetrics.New()
	backlog := engine.NewBacklog(engine.BacklogConfig{MaxPending: cfg.MaxPending, Active: active, Now: cfg.Now})
	// The engine, its queue and the webhook loop refer to each other; nothing is queued or
	// delivered before the engine exists.
	var eng *engine.Engine
	queue := localqueue.New(func(ctx context.Context, m engine.Message) error { return eng.Handle(ctx, m) },
		localqueue.Options{Logger: log})
	rules := task.Rules{DeviceID: task.LocalDeviceID, CheckScript: localrun.CheckScript(root)}
	var (
		hooks engine.Webhooks
		loop  *webhook.Loop
	)
	if !cfg.WebhookSecret.IsZero() {
		policy := webhook.Policy{AllowLoopback: cfg.AllowHTTPWebhooks}
		rules.CheckWebhookURL = policy.CheckURL
		loop = webhook.NewLoop(webhook.LoopConfig{Outbox: store, Now: cfg.Now, Logger: log,
			Deliver: func(ctx context.Context, j task.WebhookJob) (*task.WebhookJob, error) {
				return eng.DeliverWebhook(ctx, j)
			}})
		hooks = engine.Webhooks{Queue: loop, Payload: httpapi.WebhookPayload(true),
			Sender: webhook.NewSender(webhook.SenderConfig{Secret: cfg.WebhookSecret, Policy: policy, Now: cfg.Now})}
	}
	eng = engine.New(engine.Config{
		Store:     store,
		Queue:     queue,
		Runner:    runner,
		Publisher: logPublisher{log},
		Notifier:  engine.Notifiers(broker, backlog),
		Admission: backlog,
		Inventory: inventory,
		Metrics:   metrics,
		Webhooks:  hooks,
		Rules:     rules,
		Retention: cfg.Retention,
		Now:       cfg.Now,
		Logger:    log,
	})
	runner.SetReporter(eng)
	// What stops early stops the runner too, which removes its cgroups.
	stopEarly := func() {
		queue.Close()
		_ = runner.Shutdown(context.WithoutCancel(ctx))
	}

	if err := resume(ctx, active, queue, log); err != nil {
		stopEarly()
		return err
	}

	baseURL := httpapi.ListenerBaseURL
	switch {
	case cfg.PublicURL != "":
		baseURL = httpapi.PublicURL(cfg.PublicURL)
	case cfg.TrustProxy:
		baseURL = httpapi.ForwardedBaseURL
	}
	apiCfg := httpapi.Config{
		Engine:             eng,
		Owner:              httpapi.BearerTokens(cfg.Tokens, "local"),
		Watcher:            broker,
		Output:             httpapi.OutputReader(runner.OpenOutput),
		Follow:             runner,
		BaseURL:            baseURL,
		BodyTimeout:        cfg.BodyTimeout,
		MaxStreams:         cfg.MaxStreams,
		MaxStreamsPerOwner: cfg.MaxStreamsPerOwner,
		Metrics:            metrics.Handler(),
		Dashboard:          dashboard.Handler(),
		Logger:             log,
	}
	if cfg.MetricsAddr != "" {
		apiCfg.Metrics = nil // served apart, without a token
	}
	api := httpapi.New(apiCfg)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		stopEarly()
		return err
	}
	stopMetrics, err := serveMetrics(cfg.MetricsAddr, metrics.Handler(), log)
	if err != nil {
		ln.Close()
		stopEarly()
		return err
	}
	defer stopMetrics()
	// Past the cap, a connection waits in the kernel's backlog until one closes, instead of
	// taking a descriptor the scripts and the store need; idle ones are closed after
	// IdleTimeout, and headers must arrive within ReadHeaderTimeout.
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: min(10*time.Second, cfg.IdleTimeout),
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(netutil.LimitListener(ln, cfg.MaxConns)) }()
	log.Info("fleetrun serving", "addr", ln.Addr().String(), "data", cfg.DataDir, "script_root", root,
		"auth", len(cfg.Tokens) > 0, "max_procs", cfg.MaxProcs, "max_pending", cfg.MaxPending,
		"max_conns", cfg.MaxConns, "containment", runner.Contained(), "public_url", cfg.PublicURL,
		"webhooks", loop != nil, "http_webhooks", cfg.AllowHTTPWebhooks)
	if ready != nil {
		ready("http://" + ln.Addr().String())
	}

	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); sweep(ctx, store, runner, cfg.Now, log) }()
	// The delivery loop starts with whatever the outbox kept from before a restart.
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		if loop != nil {
			loop.Run(ctx)
		}
	}()

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	log.Info("fleetrun stopping")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Grace+5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		srv.Close() // long-polls and event streams still open
	}
	queue.Close()
	if rerr := runner.Shutdown(shutdownCtx); rerr != nil {
		log.Error("stopping scripts", "err", rerr)
	}
	<-sweepDone
	<-hooksDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// serveMetrics serves GET /metrics on addr, a loopback address, until the returned function is
// called; with no addr it serves nothing.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics serving", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// resume re-queues every task that was not finished when the server last stopped: pending
// tasks are dispatched, running tasks are resumed (the runner marks devices whose process was
// lost failed and starts the devices that had not started), and cancelling tasks are stopped.
func resume(ctx context.Context, active []*task.Task, q *localqueue.Queue, log *slog.Logger) error {
	for _, t := range active {
		action := engine.ActionDispatch
		if t.Status == task.StatusCancelling {
			action = engine.ActionCancel
		}
		log.Info("resuming task", "task_id", t.ID, "status", t.Status)
		if err := q.Send(ctx, engine.Message{Version: engine.MessageVersion, Action: action, TaskID: t.ID}, 0); err != nil {
			return err
		}
	}
	return nil
}

// sweep deletes expired tasks every minute until ctx ends, and then the files (working
// directories and kept output) of every task the store no longer has.
func sweep(ctx context.Context, store *localstore.Store, runner *localrun.Runner, now func() time.Time, log *slog.Logger) {
	exists := func(ctx context.Context, id string) (bool, error) {
		_, err := store.GetTask(ctx, id)
		if task.IsCode(err, task.CodeNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		if n, err := store.DeleteExpired(ctx, now()); err != nil && ctx.Err() == nil {
			log.Error("deleting expired tasks", "err", err)
		} else if n > 0 {
			log.Info("deleted expired tasks", "count", n)
		}
		if n, err := runner.Prune(ctx, exists); err != nil && ctx.Err() == nil {
			log.Error("removing the files of expired tasks", "err", err)
		} else if n > 0 {
			log.Info("removed the files of expired tasks", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// logPublisher is the local stand-in for EventBridge: terminal notifications go to the log
// (and, through the broker, to every event stream of the task).
type logPublisher struct{ log *slog.Logger }

func (p logPublisher) Publish(ctx context.Context, n task.Notification) error {
	p.log.InfoContext(ctx, "task event", "event_id", n.ID, "task_id", n.TaskID, "status", n.Status,
		"succeeded", n.Counts.Succeeded, "failed", n.Counts.Errors(), "cancelled", n.Counts.Cancelled,
		"script", strings.TrimSpace(n.ScriptURL))
	return nil
}

// Start runs `fleetrun serve` with args in the background until ctx ends, writing its logs
// (at the level --log-level names) to logs. It returns the server's base URL once it accepts
// connections, and a channel that yields Run's error when the server has stopped. It reads no
// environment: everything comes from args, so a test is not configured by the shell that runs
// it.
func Start(ctx context.Context, args []string, logs io.Writer) (baseURL string, done <-chan error, err error) {
	cfg, err := parseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		return "", nil, err
	}
	urls := make(chan string, 1)
	errs := make(chan error, 1)
	go func() {
		log, buffered := newLogger(logs, cfg)
		err := Run(ctx, cfg, log, func(u string) { urls <- u })
		_ = buffered.Flush()
		errs <- err
	}()
	select {
	case u := <-urls:
		return u, errs, nil
	case err := <-errs:
		return "", nil, err
	}
}
