// Package httpapi is fleetrun's HTTP API: plain net/http handlers over the engine, rendering the
// wire types of package api. The same handler serves `fleetrun serve` and the Lambda functions
// behind API Gateway, so it depends on nothing but the standard library and its Config.
package httpapi

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/dashboard"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Watcher tells long-polls and event streams that something changed. watch.Broker serves one
// process; watch.Poller serves Lambda.
type Watcher interface {
	// Wait blocks until task id has a version newer than version, or ctx ends (then it
	// returns ctx's error).
	Wait(ctx context.Context, id string, version int64) error
	// OwnerMark marks the writes to owner's tasks so far; WaitOwner blocks until there has
	// been another, or ctx ends. WaitOwner may return without a change (a Poller cannot know),
	// so the caller re-reads and compares.
	OwnerMark(owner string) uint64
	WaitOwner(ctx context.Context, owner string, mark uint64) error
}

// OutputStore serves the full output of the devices of a task.
type OutputStore interface {
	// OpenOutput returns one stream ("stdout" or "stderr") of device d's full output. d has
	// left pending. A missing output is an error with code task.CodeNotFound.
	OpenOutput(ctx context.Context, d *task.Device, stream string) (Output, error)
}

// Output is one stream of a device's output as an OutputStore serves it: Body, to be sent as
// the answer, or, for an output too large to answer with, Redirect: a URL that serves it to
// whoever holds the URL (a presigned S3 URL), sent as 303 See Other.
type Output struct {
	Body     io.ReadCloser
	Redirect string
}

// OutputReader adapts a function that opens a device's output as a stream, such as the local
// runner's OpenOutput, to an OutputStore.
type OutputReader func(taskID, deviceID, stream string) (io.ReadCloser, error)

// OpenOutput implements OutputStore.
func (f OutputReader) OpenOutput(_ context.Context, d *task.Device, stream string) (Output, error) {
	rc, err := f(d.TaskID, d.ID, stream)
	return Output{Body: rc}, err
}

// FollowOutput implements OutputFollower: what f opens is a file the script is still writing,
// read again as it grows.
func (f OutputReader) FollowOutput(_ context.Context, taskID, deviceID, stream string) (io.ReadCloser, error) {
	return f(taskID, deviceID, stream)
}

// OutputFollower hands over a device's output while it is being written, for GET
// …/output?follow=true: each Read of the returned reader returns what was written since the
// last one, and io.EOF when nothing more has been written yet; the handler reads again after a
// pause until the device has ended. The local runner's files are such (OutputReader), and so
// is SSM's CloudWatch output.
type OutputFollower interface {
	FollowOutput(ctx context.Context, taskID, deviceID, stream string) (io.ReadCloser, error)
}

// Config wires the HTTP API. Engine, Owner and Watcher are required.
type Config struct {
	Engine *engine.Engine
	// Owner identifies the caller; an error answers 401 with WWW-Authenticate: Bearer. Locally
	// it checks bearer tokens (BearerTokens); on Lambda it reads the authorizer's identity.
	Owner func(r *http.Request) (string, error)
	// Admin reports whether the caller is an administrator, who may read and cancel the tasks
	// of every owner; nil means nobody is. It is asked only once Owner has identified the
	// caller.
	Admin func(r *http.Request) bool
	// Watcher wakes long-polls and event streams when a task changes.
	Watcher Watcher
	// Output serves full device output; nil answers 404 for every output request.
	Output OutputStore
	// OutputLinks makes the representations link each started device's output even without
	// Output, where another server answers the output route: on AWS, OutputFunction serves it
	// and StatusFunction, which renders the devices and results, links no S3 client.
	OutputLinks bool
	// Follow reads device output while it is written, for follow=true; nil when the
	// deployment cannot (then a follow answers once the device has ended, see follow).
	Follow OutputFollower
	// BaseURL returns the absolute base of the links and Location headers of a response
	// (scheme and host, and a path prefix if the API is mounted under one). The default is
	// ListenerBaseURL; PublicURL and ForwardedBaseURL are the others a server may choose.
	BaseURL func(r *http.Request) string
	// MaxBodyBytes bounds a request body; the default, 2 MiB, fits 10,000 ids of 128 chars.
	MaxBodyBytes int64
	// FollowWait bounds how long a follow that cannot stream (no Follow) waits for its device
	// to end before it answers 409 with Retry-After; zero waits for as long as the request
	// may take.
	FollowWait time.Duration
	// FollowInterval is how often a followed output is looked at for more, and its device for
	// its end; 250 ms when zero.
	FollowInterval time.Duration
	// BodyTimeout bounds how long a request body may take to arrive once its headers have: a
	// slower one is answered 408 and its connection closed. Zero means no bound beyond the
	// server's own (a Lambda's body has arrived whole before the handler runs).
	BodyTimeout time.Duration
	// MaxStreams and MaxStreamsPerOwner cap the event streams and long-polls open at once, in
	// all and for one owner: past either, such a request is answered 503 with Retry-After.
	// Zero means no cap.
	MaxStreams, MaxStreamsPerOwner int
	// RetryAfter is how soon a client should look again at a task that is not finished when
	// the engine has no better answer (Engine.RetryAfter: on AWS, the executor's poll cadence);
	// it is sent in whole seconds, at least 1. The default is 1 s.
	RetryAfter time.Duration
	// KeepAlive is how long an event stream stays silent before it sends a comment, so that
	// proxies and API Gateway (which closes a stream idle for 5 minutes) keep it open. Zero, or
	// anything longer, is DefaultKeepAlive.
	KeepAlive time.Duration
	// Metrics, when set, is served at GET /metrics to callers Owner accepts. It is not part of
	// the API's contract: only `fleetrun serve` sets it.
	Metrics http.Handler
	// Dashboard, when set, is served at /ui/ to anyone (the page asks for a token itself), and
	// a browser asking for / is redirected there. Like Metrics, only `fleetrun serve` sets it.
	Dashboard http.Handler
	Logger    *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 2 << 20
	DefaultRetryAfter   = time.Second
	// DefaultFollowInterval is how often a followed output is looked at by default: often
	// enough that a line shows a quarter of a second after it was written.
	DefaultFollowInterval = 250 * time.Millisecond
	// DefaultKeepAlive is the longest single wait of an event stream. The broker forgets a
	// task that nobody has touched for a minute, so a wait must end well before that.
	DefaultKeepAlive = 15 * time.Second
)

// handler is the API. It is immutable once built by New.
type handler struct {
	cfg        Config
	log        *slog.Logger
	retryAfter string
	keepAlive  time.Duration
	streams    *streams
	mux        *http.ServeMux
	// tasks keeps the rendered bodies of GET /tasks/{id}.
	tasks *representations
}

// New returns the HTTP API for cfg. Every response carries X-Request-Id, every error is an
// application/problem+json api.Problem, and every request is logged once.
func New(cfg Config) http.Handler {
	return newHandler(cfg)
}

func newHandler(cfg Config) *handler {
	if cfg.BaseURL == nil {
		cfg.BaseURL = ListenerBaseURL
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.FollowInterval <= 0 {
		cfg.FollowInterval = DefaultFollowInterval
	}
	if cfg.KeepAlive <= 0 || cfg.KeepAlive > DefaultKeepAlive {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		cfg:        cfg,
		log:        cfg.Logger,
		retryAfter: seconds(cfg.RetryAfter),
		keepAlive:  cfg.KeepAlive,
		streams:    newStreams(cfg.MaxStreams, cfg.MaxStreamsPerOwner),
		mux:        http.NewServeMux(),
		tasks:      newRepresentations(),
	}
	h.routes()
	return h
}

// route is one path of the API and the handler of each method it accepts.
type route struct {
	path    string
	methods map[string]http.HandlerFunc
}

// shadowed are the paths a wildcard route matches too (/tasks/events and /tasks/{id}). The mux
// refuses a method-less pattern for such a path beside the wildcard route's method patterns, so
// their 405s are registered method by method, for otherMethods.
var shadowed = map[string]bool{"/tasks/events": true}

// otherMethods are the methods a shadowed path answers 405 to when it does not accept them.
var otherMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

func (h *handler) routes() {
	table := []route{
		{"/healthz", map[string]http.HandlerFunc{http.MethodGet: h.healthz}},
		{"/tasks", map[string]http.HandlerFunc{http.MethodPost: h.authed(h.submit), http.MethodGet: h.authed(h.listTasks)}},
		{"/tasks/events", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.watchTasks)}},
		{"/tasks/{id}", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.getTask), http.MethodDelete: h.authed(h.cancel)}},
		{"/tasks/{id}/result", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.getResult)}},
		{"/tasks/{id}/relaunch", map[string]http.HandlerFunc{http.MethodPost: h.authed(h.relaunch)}},
		{"/devices", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.inventory)}},
		{"/tasks/{id}/events", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.events)}},
		{"/tasks/{id}/deliveries", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.listDeliveries)}},
		{"/tasks/{id}/devices", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.listDevices)}},
		{"/tasks/{id}/devices/{deviceId}", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.getDevice), http.MethodDelete: h.authed(h.cancelDevice)}},
		{"/tasks/{id}/devices/{deviceId}/output", map[string]http.HandlerFunc{http.MethodGet: h.authed(h.output)}},
	}
	if h.cfg.Metrics != nil {
		table = append(table, route{"/metrics", map[string]http.HandlerFunc{http.MethodGet: h.authed(
			func(w http.ResponseWriter, r *http.Request, _ task.Caller) { h.cfg.Metrics.ServeHTTP(w, r) })}})
	}
	for _, rt := range table {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			if fn, ok := rt.methods[m]; ok {
				h.mux.HandleFunc(m+" "+rt.path, fn)
				allow = append(allow, m)
				if m == http.MethodGet {
					allow = append(allow, http.MethodHead) // the mux serves HEAD with GET
				}
			}
		}
		notAllowed := h.methodNotAllowed(strings.Join(allow, ", "))
		if shadowed[rt.path] {
			for _, m := range otherMethods {
				if _, ok := rt.methods[m]; !ok {
					h.mux.HandleFunc(m+" "+rt.path, notAllowed)
				}
			}
			continue
		}
		// A pattern without a method is less specific than the ones above, so it catches only
		// the methods the path does not accept.
		h.mux.HandleFunc(rt.path, notAllowed)
	}
	if h.cfg.Dashboard != nil {
		h.mux.Handle("GET "+dashboard.Path, http.StripPrefix(strings.TrimSuffix(dashboard.Path, "/"), h.cfg.Dashboard))
		h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			if dashboard.WantsPage(r) {
				dashboard.Redirect(w, r)
				return
			}
			h.problem(w, r, problemFor(http.StatusNotFound, api.ProblemNotFound, "no such resource: "+r.URL.Path))
		})
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.problem(w, r, problemFor(http.StatusNotFound, api.ProblemNotFound, "no such resource: "+r.URL.Path))
	})
}

// ServeHTTP assigns the request id, recovers from panics, logs the request and routes it. A
// request without a usable Host is a 400: HTTP/1.1 requires one, and nothing built from a
// malformed one could be trusted.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get(headerRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set(headerRequestID, id)
	entry := &logEntry{}
	ctx := context.WithValue(r.Context(), requestIDKey{}, id)
	r = r.WithContext(context.WithValue(ctx, logEntryKey{}, entry))
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &trackedBody{ReadCloser: r.Body}
	}
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.ErrorContext(r.Context(), "handler panic", "request_id", id, "panic", v)
			if rec.status == 0 {
				h.problem(rec, r, problemFor(http.StatusInternalServerError, api.ProblemInternal, ""))
			}
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.statusOrOK()), slog.Duration("duration", time.Since(start)), slog.String("request_id", id)}
		// The mux has set the route's path values on r by now.
		if taskID := r.PathValue("id"); taskID != "" {
			attrs = append(attrs, slog.String("task_id", taskID))
		}
		if entry.owner != "" {
			attrs = append(attrs, slog.String("owner", entry.owner))
		}
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}()
	if !validHost(r.Host) {
		h.problem(rec, r, problemFor(http.StatusBadRequest, api.ProblemMalformed, "the Host header is missing or malformed"))
		return
	}
	h.mux.ServeHTTP(rec, r)
}

// authed resolves the caller before fn runs, answering 401 when it cannot.
func (h *handler) authed(fn func(w http.ResponseWriter, r *http.Request, caller task.Caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		owner, err := h.cfg.Owner(r)
		if err != nil || owner == "" {
			h.log.DebugContext(r.Context(), "caller not identified", "request_id", requestID(r), "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleetrun"`)
			h.problem(w, r, problemFor(http.StatusUnauthorized, api.ProblemUnauthorized,
				"a valid bearer token is required"))
			return
		}
		if e, ok := r.Context().Value(logEntryKey{}).(*logEntry); ok {
			e.owner = owner
		}
		fn(w, r, task.Caller{Owner: owner, Admin: h.cfg.Admin != nil && h.cfg.Admin(r)})
	}
}

func (h *handler) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		h.problem(w, r, problemFor(http.StatusMethodNotAllowed, api.ProblemMethodNotAllowed,
			r.Method+" is not allowed here; allowed: "+allow))
	}
}

// retryAfterFor is the Retry-After of unfinished task t: the engine's, when it follows a
// cadence, else the configured one.
func (h *handler) retryAfterFor(t *task.Task) string {
	if d := h.cfg.Engine.RetryAfter(t); d > 0 {
		return seconds(d)
	}
	return h.retryAfter
}

// seconds formats d as whole seconds, rounded up, at least 1.
func seconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// trackedBody records whether a request body has been read to its end.
type trackedBody struct {
	io.ReadCloser
	done atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done.Store(true)
	}
	return n, err
}

// bodyUnread reports whether r has a body that has not been read to its end. An answer sent
// before the end, a 401 or a 408, closes the connection: net/http would otherwise read the
// rest first, to keep the connection, and a client that never sends it would hold the answer
// back for ever.
func bodyUnread(r *http.Request) bool {
	b, ok := r.Body.(*trackedBody)
	return ok && !b.done.Load()
}

// logEntry collects, while a request is handled, what its log line says beyond the request
// itself: the caller, once authed has identified it.
type logEntry struct{ owner string }

type logEntryKey struct{}

// recorder remembers the status written, for the request log. Unwrap lets
// http.ResponseController reach the underlying writer's Flush and deadlines.
type recorder struct {
	http.ResponseWriter
	status int
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for writers that support it.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recorder) statusOrOK() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
