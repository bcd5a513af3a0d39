package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

func TestOneFailingDeviceCompletesWithItInTheResult(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	r := s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"d1", "d2", "d3"}, ScriptURL: "flaky.sh"})
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	var submitted api.Task
	r.decode(t, &submitted)
	if loc := r.header.Get("Location"); loc != s.url+"/tasks/"+submitted.ID {
		t.Errorf("Location = %q, want %q", loc, s.url+"/tasks/"+submitted.ID)
	}
	if r.header.Get("Retry-After") == "" || r.header.Get(api.HeaderRequestID) == "" {
		t.Errorf("submit headers lack Retry-After or %s: %v", api.HeaderRequestID, r.header)
	}
	if submitted.Status != api.StatusPending {
		t.Errorf("submitted status = %s, want pending", submitted.Status)
	}

	done := s.waitStatus(submitted.ID, api.StatusCompleted)
	if done.Result == nil || !slices.Equal(done.Result.FailedDevices, []string{"d2"}) ||
		!slices.Equal(done.Result.SucceededDevices, []string{"d1", "d3"}) {
		t.Fatalf("result = %+v, want d2 failed and d1, d3 succeeded", done.Result)
	}
	if done.Progress.Percentage != 100 || done.Progress.Devices.Failed != 1 || done.Progress.Devices.Succeeded != 2 {
		t.Errorf("progress = %+v", done.Progress)
	}

	r = s.do(http.MethodGet, "/tasks/"+done.ID+"/devices?status=failed", nil)
	var failed api.DeviceList
	r.decode(t, &failed)
	if len(failed.Items) != 1 || failed.Items[0].ID != "d2" || failed.Items[0].ExitCode == nil || *failed.Items[0].ExitCode != 7 {
		t.Fatalf("failed devices = %s, want d2 with exit code 7", r.body)
	}
	if !strings.Contains(failed.Items[0].Stderr, "broken") {
		t.Errorf("d2 stderr = %q, want the script's message", failed.Items[0].Stderr)
	}
	r = s.do(http.MethodGet, "/tasks/"+done.ID+"/devices/d1/output", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "run on d1") {
		t.Errorf("d1 output: %d %q", r.status, r.body)
	}

	// A finished task cannot be cancelled: 409 with its status.
	r = s.do(http.MethodDelete, "/tasks/"+done.ID, nil)
	var p api.Problem
	r.decode(t, &p)
	if r.status != http.StatusConflict || p.TaskStatus != api.StatusCompleted ||
		!strings.HasPrefix(r.header.Get("Content-Type"), api.MediaProblem) {
		t.Fatalf("DELETE completed task: %d %s", r.status, r.body)
	}
}

func TestCancelStopsEveryProcess(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	task := s.submit(api.SubmitRequest{DeviceIDs: []string{"a", "b"}, ScriptURL: "long.sh"})
	s.waitFor(task.ID, "running on both devices", func(t api.Task) bool { return t.Progress.Devices.Running == 2 })
	pids := readPids(t, s.pids, "a.pid", "a.child", "b.pid", "b.child")

	r := s.do(http.MethodDelete, "/tasks/"+task.ID, nil)
	var cancelling api.Task
	r.decode(t, &cancelling)
	if r.status != http.StatusAccepted && r.status != http.StatusOK {
		t.Fatalf("DELETE running task: %d %s", r.status, r.body)
	}
	if cancelling.Status != api.StatusCancelling && cancelling.Status != api.StatusCancelled {
		t.Fatalf("DELETE answered status %s", cancelling.Status)
	}
	done := s.waitStatus(task.ID, api.StatusCancelled)
	if done.Progress.Devices.Cancelled != 2 {
		t.Errorf("cancelled devices = %d, want 2", done.Progress.Devices.Cancelled)
	}
	// Cancel is idempotent: a repeat answers the current state.
	r = s.do(http.MethodDelete, "/tasks/"+task.ID, nil)
	if r.status != http.StatusOK {
		t.Errorf("repeated DELETE: %d %s", r.status, r.body)
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
}

func TestIdempotentReplayAndChangedBody(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	req := api.SubmitRequest{DeviceIDs: []string{"x1"}, ScriptURL: "ok.sh"}
	first := s.submit(req, api.HeaderIdempotencyKey, "key-1")
	r := s.do(http.MethodPost, "/tasks", req, api.HeaderIdempotencyKey, "key-1")
	var again api.Task
	r.decode(t, &again)
	if r.status != http.StatusAccepted || again.ID != first.ID {
		t.Fatalf("replay: %d id %s, want 202 with %s", r.status, again.ID, first.ID)
	}
	r = s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"x2"}, ScriptURL: "ok.sh"}, api.HeaderIdempotencyKey, "key-1")
	var p api.Problem
	r.decode(t, &p)
	if r.status != http.StatusUnprocessableEntity || p.Type != api.ProblemIdempotencyMismatch {
		t.Fatalf("changed body: %d %s", r.status, r.body)
	}
	if n := countTasks(t, s); n != 1 {
		t.Fatalf("%d tasks stored, want 1", n)
	}
}

func TestBadInputIsA4xxProblemAndStoresNothing(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	outside := filepath.Join(t.TempDir(), "evil.sh")
	if err := os.WriteFile(outside, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "dev-" + strconv.Itoa(i)
		}
		return out
	}
	huge := `{"deviceIds":["` + strings.Repeat("a", 3<<20) + `"],"scriptUrl":"ok.sh"}`
	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        any
		status      int
		pointer     string
	}{
		{"broken JSON", "POST", "/tasks", "application/json", `{"deviceIds": [`, 400, ""},
		{"wrong types", "POST", "/tasks", "application/json", `{"deviceIds": "d1", "scriptUrl": 5}`, 422, "/deviceIds"},
		{"no devices", "POST", "/tasks", "application/json", api.SubmitRequest{DeviceIDs: []string{}, ScriptURL: "ok.sh"}, 422, "/deviceIds"},
		{"10,001 devices", "POST", "/tasks", "application/json", api.SubmitRequest{DeviceIDs: ids(10001), ScriptURL: "ok.sh"}, 422, "/deviceIds"},
		{"duplicate ids", "POST", "/tasks", "application/json", api.SubmitRequest{DeviceIDs: []string{"a", "b", "a"}, ScriptURL: "ok.sh"}, 422, "/deviceIds/2"},
		{"bad id", "POST", "/tasks", "application/json", api.SubmitRequest{DeviceIDs: []string{"ok", "no spaces"}, ScriptURL: "ok.sh"}, 422, "/deviceIds/1"},
		{"script outside the root", "POST", "/tasks", "application/json", api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "../" + filepath.Base(filepath.Dir(outside)) + "/evil.sh"}, 422, "/scriptUrl"},
		{"absolute script outside the root", "POST", "/tasks", "application/json", api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "file://" + outside}, 422, "/scriptUrl"},
		{"wrong content type", "POST", "/tasks", "text/plain", `{"deviceIds":["a"],"scriptUrl":"ok.sh"}`, 415, ""},
		{"huge body", "POST", "/tasks", "application/json", huge, 413, ""},
		{"unknown task", "GET", "/tasks/01JDZZZZZZZZZZZZZZZZZZZZZZ", "", nil, 404, ""},
		{"cancel unknown task", "DELETE", "/tasks/01JDZZZZZZZZZZZZZZZZZZZZZZ", "", nil, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var header []string
			if c.contentType != "" {
				header = []string{"Content-Type", c.contentType}
			}
			r := s.do(c.method, c.path, c.body, header...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %.300s", r.status, c.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, api.MediaProblem) {
				t.Fatalf("Content-Type %q, want %s", ct, api.MediaProblem)
			}
			var p api.Problem
			r.decode(t, &p)
			if p.Status != c.status || p.Type == "" || p.Title == "" {
				t.Errorf("problem = %+v", p)
			}
			if c.pointer != "" && !slices.ContainsFunc(p.Errors, func(e api.FieldError) bool { return e.Pointer == c.pointer }) {
				t.Errorf("errors %+v lack pointer %s", p.Errors, c.pointer)
			}
		})
	}
	if n := countTasks(t, s); n != 0 {
		t.Fatalf("%d tasks stored after bad input, want 0", n)
	}
}

func TestLongPollReturnsWhenTheTaskChanges(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	task := s.submit(api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "long.sh"})
	running := s.waitFor(task.ID, "running", func(t api.Task) bool { return t.Progress.Devices.Running == 1 })

	type polled struct {
		r       response
		elapsed time.Duration
	}
	result := make(chan polled, 1)
	go func() {
		start := time.Now()
		r := s.do(http.MethodGet, "/tasks/"+task.ID, nil, "Prefer", "wait=20", "If-None-Match", fmt.Sprintf("%q", fmt.Sprint(running.Version)))
		result <- polled{r, time.Since(start)}
	}()
	// Change the task while the poll waits: the poll must answer with the change, not at 20 s.
	if r := s.do(http.MethodDelete, "/tasks/"+task.ID, nil); r.status >= 300 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	select {
	case p := <-result:
		var changed api.Task
		p.r.decode(t, &changed)
		if p.r.status != http.StatusOK || changed.Version <= running.Version {
			t.Fatalf("long-poll answered %d version %d, want 200 with a version after %d", p.r.status, changed.Version, running.Version)
		}
		if p.r.header.Get("Preference-Applied") == "" {
			t.Errorf("long-poll response lacks Preference-Applied")
		}
		t.Logf("long-poll answered %v after the change was requested", p.elapsed)
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll did not return when the task changed")
	}
}

func TestSIGKILLLosesNoAcceptedTask(t *testing.T) {
	t.Parallel()
	data, scripts := t.TempDir(), scriptRoot(t)
	s := startServer(t, data, scripts)
	var accepted []string
	for i := range 20 {
		task := s.submit(api.SubmitRequest{DeviceIDs: []string{fmt.Sprintf("d%d", i)}, ScriptURL: "ok.sh"})
		accepted = append(accepted, task.ID)
	}
	long := s.submit(api.SubmitRequest{DeviceIDs: []string{"stuck"}, ScriptURL: "long.sh"})
	s.waitFor(long.ID, "running", func(t api.Task) bool { return t.Progress.Devices.Running == 1 })
	pids := readPids(t, s.pids, "stuck.pid")
	s.kill()

	s2 := startServer(t, data, scripts)
	for _, id := range accepted {
		s2.waitStatus(id, api.StatusCompleted)
	}
	// The device whose process was lost is not re-run: it is failed, and says why.
	done := s2.waitFor(long.ID, "finished", func(t api.Task) bool { return api.Terminal(t.Status) })
	if done.Progress.Devices.Failed != 1 {
		t.Errorf("lost device: %+v, want it failed", done.Progress.Devices)
	}
	r := s2.do(http.MethodGet, "/tasks/"+long.ID+"/devices", nil)
	var devices api.DeviceList
	r.decode(t, &devices)
	if len(devices.Items) != 1 || devices.Items[0].Reason == "" {
		t.Errorf("lost device = %s, want a reason", r.body)
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
	if n := countTasks(t, s2); n != len(accepted)+1 {
		t.Fatalf("%d tasks after restart, want %d", n, len(accepted)+1)
	}
}

// countTasks counts every task the default owner can list.
func countTasks(t *testing.T, s *server) int {
	t.Helper()
	n := 0
	for path := "/tasks?limit=1000"; path != ""; {
		r := s.do(http.MethodGet, path, nil)
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		var list api.TaskList
		r.decode(t, &list)
		n += len(list.Items)
		path = strings.TrimPrefix(list.Next, s.url)
	}
	return n
}

// readPids waits for the scripts to have written their pid files and returns the pids.
func readPids(t *testing.T, dir string, names ...string) []int {
	t.Helper()
	var pids []int
	for _, name := range names {
		clocktest.Eventually(t, 10*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(dir, name))
			pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || perr != nil {
				return fmt.Errorf("no pid in %s", name)
			}
			pids = append(pids, pid)
			return nil
		})
	}
	return pids
}

// waitGone fails the test unless process pid is gone (or a zombie) before a deadline.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	clocktest.Eventually(t, 10*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("process %d still running", pid)
		}
		return nil
	})
}

// alive reports whether pid is a live process: not gone, and not a zombie waiting for reaping.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}
