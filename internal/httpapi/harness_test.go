package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/inventoryfile"
	"github.com/fleetrun/fleetrun/internal/localstore"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/watch"
)

// Tokens of the test server: each secret names its owner.
const (
	aliceToken = "alice-secret"
	bobToken   = "bob-secret"
)

// testBundle is one API over a real engine and store, with a queue the test delivers by hand
// and a runner that does nothing, so every device update comes from the test through Report.
type testBundle struct {
	t       *testing.T
	engine  *engine.Engine
	store   *faultyStore
	queue   *fakeQueue
	runner  *fakeRunner
	output  *fakeOutput
	watcher *signalWatcher
	handler *handler
	srv     *httptest.Server
	logs    *syncBuffer
	clock   *clocktest.Clock
}

type bundleOptions struct {
	maxBodyBytes int64
	keepAlive    time.Duration
	noOutput     bool
	// outputLinks links the devices' output even without an output store, as StatusFunction
	// does for OutputFunction.
	outputLinks bool
	// noInventory wires no inventory, as `fleetrun serve` without --inventory.
	noInventory bool
	// following makes the output store a follower (outputs read while written); followWait
	// bounds the wait of a follow without one.
	following   bool
	followWait  time.Duration
	bodyTimeout time.Duration
	// maxStreams and maxStreamsPerOwner cap event streams and long-polls.
	maxStreams, maxStreamsPerOwner int
	// polled makes the runner one the executor polls, as SSM is.
	polled bool
	// adminToken, when set, is a token whose caller is an administrator.
	adminToken string
	// wrap, when set, wraps the API in the test server.
	wrap func(http.Handler) http.Handler
}

// testInventory is the inventory of every test server: three devices in two tags.
const testInventory = `devices:
  - {id: web-1, name: web-1.example, platform: Linux, tags: {Env: prod, Role: web}}
  - {id: web-2, tags: {Env: staging, Role: web}}
  - {id: db-1, tags: {Env: prod, Role: db}}
`

func setup(t *testing.T, opts ...bundleOptions) *testBundle {
	t.Helper()
	var o bundleOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	// Every read moves the clock on a second, so every write has its own time.
	clock := clocktest.NewTicking(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), time.Second)
	store, err := localstore.Open(filepath.Join(t.TempDir(), "fleetrun.db"), localstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	b := &testBundle{
		t:      t,
		store:  &faultyStore{Store: store},
		queue:  &fakeQueue{},
		runner: &fakeRunner{},
		output: &fakeOutput{files: map[string]string{}},
		logs:   &syncBuffer{},
		clock:  clock,
	}
	broker := watch.NewBroker()
	b.watcher = &signalWatcher{Watcher: broker, waiting: make(chan string, 100)}
	inventory := filepath.Join(t.TempDir(), "devices.yaml")
	if err := os.WriteFile(inventory, []byte(testInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventoryfile.Open(inventory, inventoryfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var inventoryOrNone engine.Inventory = inv
	if o.noInventory {
		inventoryOrNone = nil
	}
	var runner engine.Runner = b.runner
	if o.polled {
		runner = polledRunner{b.runner}
	}
	b.engine = engine.New(engine.Config{
		Store:     b.store,
		Queue:     b.queue,
		Runner:    runner,
		Notifier:  broker,
		Inventory: inventoryOrNone,
		Rules: task.Rules{DeviceID: task.LocalDeviceID, CheckScript: func(url string) error {
			if !strings.HasPrefix(url, "scripts/") {
				return errors.New("scriptUrl must name a file under scripts/")
			}
			return nil
		}, CheckWebhookURL: func(url string) error {
			if !strings.HasPrefix(url, "https://hooks.example/") {
				return errors.New("must be an https URL of hooks.example")
			}
			return nil
		}},
		Now: clock.Now,
	})
	cfg := Config{
		MaxStreamsPerOwner: o.maxStreamsPerOwner,
		Engine:             b.engine,
		Owner:              BearerTokens(map[string]string{aliceToken: "alice", bobToken: "bob"}, ""),
		Watcher:            b.watcher,
		Output:             b.output,
		MaxBodyBytes:       o.maxBodyBytes,
		BodyTimeout:        o.bodyTimeout,
		MaxStreams:         o.maxStreams,
		Logger:             slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.noOutput {
		cfg.Output = nil
	}
	cfg.OutputLinks = o.outputLinks
	if o.adminToken != "" {
		cfg.Owner = BearerTokens(map[string]string{aliceToken: "alice", bobToken: "bob", o.adminToken: "admin"}, "")
		cfg.Admin = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+o.adminToken }
	}
	if o.following {
		cfg.Follow = &fakeFollower{fakeOutput: b.output}
	}
	cfg.FollowWait = o.followWait
	cfg.FollowInterval = 20 * time.Millisecond
	cfg.KeepAlive = o.keepAlive
	b.handler = newHandler(cfg)
	var served http.Handler = b.handler
	if o.wrap != nil {
		served = o.wrap(b.handler)
	}
	b.srv = httptest.NewServer(served)
	// A redirect is an answer to check, not to follow: it may lead off this server.
	b.srv.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	t.Cleanup(b.srv.Close)
	return b
}

// req describes one request to the test server.
type req struct {
	method string
	path   string // relative to the server, or absolute
	token  string // "" sends no Authorization
	header http.Header
	body   string
	ctype  string // Content-Type; defaults to application/json when there is a body; "-" sends none
	// stall sends the request on a connection of its own, with all of the body but its last
	// byte, and then nothing (see stalledDo).
	stall bool
	// firstEvent reads an event stream that does not end only up to its first event.
	firstEvent bool
}

// stalledDo sends r with a body that never ends and reads the answer. A Go client cannot send
// such a request: it writes a body whole before it reads an answer.
func (b *testBundle) stalledDo(r req) *http.Response {
	b.t.Helper()
	addr := strings.TrimPrefix(b.srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		r.method, r.path, addr, r.token, api.MediaJSON, len(r.body), r.body[:len(r.body)-1])
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		b.t.Fatalf("%s %s with a stalled body: %v", r.method, r.path, err)
	}
	return res
}

// resp is a response with its body read.
type resp struct {
	*http.Response
	body []byte
}

func (b *testBundle) newRequest(ctx context.Context, r req) *http.Request {
	b.t.Helper()
	url := r.path
	if !strings.HasPrefix(url, "http") {
		url = b.srv.URL + r.path
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(ctx, r.method, url, body)
	if err != nil {
		b.t.Fatalf("new request: %v", err)
	}
	for k, vs := range r.header {
		hr.Header[k] = vs
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	switch {
	case r.ctype == "-":
	case r.ctype != "":
		hr.Header.Set("Content-Type", r.ctype)
	case r.body != "":
		hr.Header.Set("Content-Type", api.MediaJSON)
	}
	return hr
}

func (b *testBundle) do(r req) resp {
	b.t.Helper()
	hr := b.newRequest(context.Background(), r)
	res, err := b.srv.Client().Do(hr)
	if err != nil {
		b.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return resp{res, data}
}

// submitBody is a valid submit request for devices.
func submitBody(devices ...string) string {
	b, _ := json.Marshal(api.SubmitRequest{DeviceIDs: devices, ScriptURL: "scripts/patch.sh", Args: []string{"--dry-run"}})
	return string(b)
}

// submit submits a task for alice and returns it.
func (b *testBundle) submit(devices ...string) api.Task {
	b.t.Helper()
	r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: submitBody(devices...)})
	if r.StatusCode != http.StatusAccepted {
		b.t.Fatalf("submit: status %d: %s", r.StatusCode, r.body)
	}
	return decode[api.Task](b.t, r)
}

// deliver hands every queued message to the engine, as the queue consumer would.
func (b *testBundle) deliver() {
	b.t.Helper()
	for _, m := range b.queue.take() {
		if err := b.engine.Handle(context.Background(), m); err != nil {
			b.t.Fatalf("handle %+v: %v", m, err)
		}
	}
}

// report applies device updates as a runner would.
func (b *testBundle) report(taskID string, updates ...task.DeviceUpdate) *task.Task {
	b.t.Helper()
	for i := range updates {
		if updates[i].At.IsZero() {
			updates[i].At = b.clock.Now()
		}
	}
	t, err := b.engine.Report(context.Background(), taskID, updates)
	if err != nil {
		b.t.Fatalf("report: %v", err)
	}
	return t
}

// finish runs a task to completed: dispatch, then every device succeeds.
func (b *testBundle) finish(id string, devices ...string) *task.Task {
	b.t.Helper()
	b.deliver()
	var ups []task.DeviceUpdate
	for _, d := range devices {
		ups = append(ups, task.DeviceUpdate{DeviceID: d, Status: task.DeviceSucceeded, ExitCode: new(0), Stdout: "ok " + d})
	}
	t := b.report(id, ups...)
	if t.Status != task.StatusCompleted {
		b.t.Fatalf("task %s is %s after every device succeeded", id, t.Status)
	}
	return t
}

// storedTasks lists every task of owner straight from the store.
func (b *testBundle) storedTasks(owner string) []*task.Task {
	b.t.Helper()
	page, err := b.store.ListTasks(context.Background(), task.ListQuery{Owner: owner, Limit: task.MaxPageSize})
	if err != nil {
		b.t.Fatalf("list stored tasks: %v", err)
	}
	return page.Tasks
}

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, r.body, err)
	}
	return v
}

// wantProblem asserts r is a problem of status and type, carrying the response's request id.
func wantProblem(t *testing.T, r resp, status int, typ string) api.Problem {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", r.StatusCode, status, r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != api.MediaProblem {
		t.Fatalf("Content-Type %q, want %q", ct, api.MediaProblem)
	}
	p := decode[api.Problem](t, r)
	if p.Type != typ || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want type %s status %d with a title and detail", p, typ, status)
	}
	if id := r.Header.Get(api.HeaderRequestID); id == "" || p.RequestID != id {
		t.Fatalf("problem requestId %q, header %q", p.RequestID, id)
	}
	return p
}

// fakeQueue records messages until the test delivers them; fail makes Send fail.
type fakeQueue struct {
	mu   sync.Mutex
	msgs []engine.Message
	fail atomic.Bool
}

func (q *fakeQueue) Send(_ context.Context, m engine.Message, _ time.Duration) error {
	if q.fail.Load() {
		return errors.New("queue is down")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

func (q *fakeQueue) take() []engine.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs
}

func (q *fakeQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// fakeRunner starts nothing: the test moves devices with Report.
type fakeRunner struct {
	started, cancelled, stopped atomic.Int32
}

func (r *fakeRunner) StopDevices(_ context.Context, _ *task.Task, ids []string) error {
	r.stopped.Add(int32(len(ids)))
	return nil
}

func (r *fakeRunner) Start(context.Context, *task.Task) error {
	r.started.Add(1)
	return nil
}

func (r *fakeRunner) Cancel(context.Context, *task.Task) error {
	r.cancelled.Add(1)
	return nil
}

// fakeFollower is a fakeOutput whose outputs can be followed while they grow (put replaces,
// appendOutput adds): each reader returns what was added since it last read, then io.EOF.
type fakeFollower struct{ *fakeOutput }

func (o *fakeOutput) appendOutput(taskID, deviceID, stream, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files[taskID+"/"+deviceID+"/"+stream] += text
}

func (f *fakeFollower) FollowOutput(_ context.Context, taskID, deviceID, stream string) (io.ReadCloser, error) {
	key := taskID + "/" + deviceID + "/" + stream
	f.mu.Lock()
	_, ok := f.files[key]
	f.mu.Unlock()
	if !ok {
		return nil, task.Errorf(task.CodeNotFound, "no %s output for device %s yet", stream, deviceID)
	}
	return &growing{o: f.fakeOutput, key: key}, nil
}

// growing reads a fakeOutput's text as it grows.
type growing struct {
	o   *fakeOutput
	key string
	pos int
}

func (g *growing) Read(p []byte) (int, error) {
	g.o.mu.Lock()
	defer g.o.mu.Unlock()
	text := g.o.files[g.key]
	if g.pos >= len(text) {
		return 0, io.EOF
	}
	n := copy(p, text[g.pos:])
	g.pos += n
	return n, nil
}

func (g *growing) Close() error { return nil }

// polledRunner is a fakeRunner the executor polls; the polls report nothing.
type polledRunner struct{ *fakeRunner }

func (polledRunner) Poll(context.Context, *task.Task) ([]task.DeviceUpdate, error) { return nil, nil }

// fakeOutput serves full output from a map keyed "task/device/stream".
type fakeOutput struct {
	mu    sync.Mutex
	files map[string]string
}

func (o *fakeOutput) put(taskID, deviceID, stream, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files[taskID+"/"+deviceID+"/"+stream] = text
}

// redirect makes the output of a device be served from url instead, as an output too large
// to answer with is.
func (o *fakeOutput) redirect(taskID, deviceID, stream, url string) {
	o.put(taskID, deviceID, stream, redirectPrefix+url)
}

const redirectPrefix = "redirect:"

func (o *fakeOutput) OpenOutput(_ context.Context, d *task.Device, stream string) (Output, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	text, ok := o.files[d.TaskID+"/"+d.ID+"/"+stream]
	if !ok {
		return Output{}, task.Errorf(task.CodeNotFound, "no %s output for device %s", stream, d.ID)
	}
	if url, ok := strings.CutPrefix(text, redirectPrefix); ok {
		return Output{Redirect: url}, nil
	}
	return Output{Body: io.NopCloser(strings.NewReader(text))}, nil
}

// signalWatcher tells the test when a request has started waiting, so a test can make its
// change strictly after the wait began.
type signalWatcher struct {
	Watcher
	waiting chan string
}

func (w *signalWatcher) Wait(ctx context.Context, id string, version int64) error {
	select {
	case w.waiting <- fmt.Sprintf("%s@%d", id, version):
	default:
	}
	return w.Watcher.Wait(ctx, id, version)
}

// awaitWait blocks until a request waits on task id at version, or fails the test.
func (b *testBundle) awaitWait(id string, version int64) {
	b.t.Helper()
	want := fmt.Sprintf("%s@%d", id, version)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-b.watcher.waiting:
			if got == want {
				return
			}
		case <-deadline:
			b.t.Fatalf("no request waited on %s", want)
		}
	}
}

// faultyStore fails every read when broken, to show how internal errors are answered.
type faultyStore struct {
	task.Store
	broken atomic.Bool
	// writes counts the calls of the store's writing methods.
	writes atomic.Int64
}

func (s *faultyStore) CreateTask(ctx context.Context, t *task.Task, idem *task.IdempotencyRecord) (*task.Task, bool, error) {
	s.writes.Add(1)
	return s.Store.CreateTask(ctx, t, idem)
}

func (s *faultyStore) Transition(ctx context.Context, tr task.Transition) (*task.Task, error) {
	s.writes.Add(1)
	return s.Store.Transition(ctx, tr)
}

func (s *faultyStore) ApplyDeviceUpdates(ctx context.Context, id string, u []task.DeviceUpdate) (*task.Task, int, error) {
	s.writes.Add(1)
	return s.Store.ApplyDeviceUpdates(ctx, id, u)
}

func (s *faultyStore) MarkPublished(ctx context.Context, id string) error {
	s.writes.Add(1)
	return s.Store.MarkPublished(ctx, id)
}

func (s *faultyStore) RecordDelivery(ctx context.Context, d task.Delivery) error {
	s.writes.Add(1)
	return s.Store.RecordDelivery(ctx, d)
}

func (s *faultyStore) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	s.writes.Add(1)
	return s.Store.DeleteExpired(ctx, now)
}

func (s *faultyStore) GetTask(ctx context.Context, id string) (*task.Task, error) {
	if s.broken.Load() {
		return nil, errors.New("bolt: disk on fire at /secret/path")
	}
	return s.Store.GetTask(ctx, id)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
