package localrun

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// fakeStore is the runner's view of the engine and the store: it applies reported updates the
// way a task.Store does (forward moves only) and lists devices in small pages, so paging is
// exercised.
type fakeStore struct {
	mu         sync.Mutex
	order      []string
	devices    map[string]*task.Device
	updates    []task.DeviceUpdate // every update received, applied or not
	calls      int
	failFirst  int // fail this many Report calls before accepting any
	running    int // devices currently running, by the reports
	maxRunning int
	steps      []string // every SetStep, as "task: step"
}

func newFakeStore(ids ...string) *fakeStore {
	s := &fakeStore{devices: make(map[string]*task.Device)}
	for _, id := range ids {
		s.order = append(s.order, id)
		s.devices[id] = &task.Device{ID: id, Status: task.DevicePending}
	}
	return s
}

// addTask adds devices that belong to taskID alone; devices added by newFakeStore belong to
// every task.
func (s *fakeStore) addTask(taskID string, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.order = append(s.order, id)
		s.devices[id] = &task.Device{TaskID: taskID, ID: id, Status: task.DevicePending}
	}
}

// set stores a device as it would be after an earlier life of the server.
func (s *fakeStore) set(d task.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.devices[d.ID]; !ok {
		s.order = append(s.order, d.ID)
	}
	s.devices[d.ID] = &d
}

func (s *fakeStore) Report(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.failFirst {
		return nil, errors.New("store busy")
	}
	for _, u := range updates {
		s.updates = append(s.updates, u)
		d, ok := s.devices[u.DeviceID]
		if ok && d.Status == task.DeviceRunning && u.Status == task.DeviceRunning && len(u.Stdout) > len(d.Stdout) {
			d.Stdout = u.Stdout // a running device's output, refreshed
			continue
		}
		if !ok || !d.Status.CanMove(u.Status) {
			continue
		}
		if u.Status == task.DeviceRunning {
			s.running++
			s.maxRunning = max(s.maxRunning, s.running)
		} else if d.Status == task.DeviceRunning {
			s.running--
		}
		d.Status, d.ExitCode, d.Reason, d.Ref = u.Status, u.ExitCode, u.Reason, u.Ref
		d.Stdout, d.Stderr, d.StdoutTruncated, d.StderrTruncated = u.Stdout, u.Stderr, u.StdoutTruncated, u.StderrTruncated
	}
	return &task.Task{ID: taskID}, nil
}

// SetStep records what the runner says a task is doing.
func (s *fakeStore) SetStep(_ context.Context, taskID, step string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, taskID+": "+step)
	return nil
}

func (s *fakeStore) stepsSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.steps)
}

func (s *fakeStore) ListDevices(ctx context.Context, taskID string, q task.DeviceQuery) (*task.DevicePage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	const pageSize = 2
	start := 0
	if q.Cursor != "" {
		start, _ = strconv.Atoi(q.Cursor)
	}
	page := &task.DevicePage{}
	i := start
	for ; i < len(s.order) && len(page.Devices) < pageSize; i++ {
		d := *s.devices[s.order[i]]
		if d.TaskID != "" && d.TaskID != taskID {
			continue
		}
		if len(q.Statuses) == 0 || slices.Contains(q.Statuses, d.Status) {
			page.Devices = append(page.Devices, &d)
		}
	}
	if i < len(s.order) {
		page.Next = strconv.Itoa(i)
	}
	return page, nil
}

func (s *fakeStore) GetDevice(ctx context.Context, taskID, id string) (*task.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return nil, task.Errorf(task.CodeNotFound, "no device %s", id)
	}
	c := *d
	return &c, nil
}

// device returns a copy of a device as stored.
func (s *fakeStore) device(id string) task.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.devices[id]
}

// updatesFor returns every update received for device id, in order.
func (s *fakeStore) updatesFor(id string) []task.DeviceUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []task.DeviceUpdate
	for _, u := range s.updates {
		if u.DeviceID == id {
			out = append(out, u)
		}
	}
	return out
}

func (s *fakeStore) peakRunning() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRunning
}

func (s *fakeStore) reportCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// allTerminal reports whether every device has reached a terminal state.
func (s *fakeStore) allTerminal() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if !d.Status.Terminal() {
			return false
		}
	}
	return true
}

// waitFor waits until cond holds, failing the test at the deadline.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	clocktest.Eventually(t, timeout, func() error {
		if !cond() {
			return errors.New("waiting for " + what)
		}
		return nil
	})
}

// waitStatus waits until device id of s is in status want.
func waitStatus(t *testing.T, s *fakeStore, id string, want task.DeviceStatus) task.Device {
	t.Helper()
	waitFor(t, "device "+id+" to be "+string(want), 15*time.Second, func() bool { return s.device(id).Status == want })
	return s.device(id)
}

// bundle is one test's runner with its directories and store.
type bundle struct {
	root, data string
	store      *fakeStore
	runner     *Runner
}

// setup starts a runner on store whose running devices' output is not refreshed, so that a
// test sees only the reports it expects; setupWith changes the configuration.
func setup(t *testing.T, store *fakeStore, now func() time.Time) *bundle {
	t.Helper()
	return setupWith(t, store, Config{Now: now})
}

// setupWith is setup with more of the runner's Config: MaxProcs, NoCgroups, OutputInterval
// (which is off unless set).
func setupWith(t *testing.T, store *fakeStore, cfg Config) *bundle {
	t.Helper()
	b := &bundle{root: t.TempDir(), data: t.TempDir(), store: store}
	trap := &errorTrap{}
	t.Cleanup(func() {
		for _, m := range trap.messages() {
			t.Errorf("the runner logged an error: %s", m)
		}
	})
	cfg.ScriptRoot, cfg.DataDir, cfg.Devices, cfg.Grace, cfg.Logger = b.root, b.data, store, 200*time.Millisecond, slog.New(trap)
	if cfg.OutputInterval == 0 {
		cfg.OutputInterval = -1
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.SetReporter(store)
	b.runner = r
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b
}

// script writes an executable script under the bundle's root and returns its name.
func (b *bundle) script(t *testing.T, name, body string) string {
	t.Helper()
	writeExecutable(t, filepath.Join(b.root, name), "#!/bin/sh\n"+body+"\n")
	return name
}

// writeExecutable writes an executable file through a child process. Writing it from this
// process instead could leak the open descriptor into a child forked at that moment by a
// parallel test, and exec would then fail with "text file busy".
func writeExecutable(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `cat > "$1" && chmod 755 "$1"`, "sh", path)
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write %s: %v: %s", path, err, out)
	}
}

// newTask returns a running task that started at startedAt.
func newTask(id, script string, startedAt time.Time, devices ...string) *task.Task {
	return &task.Task{ID: id, Status: task.StatusRunning, StartedAt: &startedAt, Request: task.Request{
		DeviceIDs: devices, ScriptURL: script, Args: []string{}, TimeoutSeconds: 60,
		MaxConcurrency: "50", MaxErrors: "100%"}}
}

// alive reports whether process pid still runs. A zombie counts as gone: it runs nothing, and
// whether it is reaped depends on who adopted it.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(stat[i+1:])), "Z")
}

// readPid waits for a script to write its pid file and returns the pid.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, "pid file "+filepath.Base(path), 15*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// waitGone waits until every pid has stopped running.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		waitFor(t, "process "+strconv.Itoa(pid)+" to be gone", 10*time.Second, func() bool { return !alive(pid) })
	}
}

// startGroup starts `sleep 60` in a process group of its own, as a script of an earlier server
// life would have been left, with env added to its environment. It returns the command and a
// channel closed when it has been reaped.
func startGroup(t *testing.T, env ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd, done
}

// errorTrap is a slog handler that keeps error records, so a test fails if the runner logs an
// error where nothing should go wrong.
type errorTrap struct {
	mu   sync.Mutex
	msgs []string
}

func (h *errorTrap) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h *errorTrap) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, b.String())
	return nil
}

func (h *errorTrap) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorTrap) WithGroup(string) slog.Handler      { return h }

func (h *errorTrap) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.msgs)
}
