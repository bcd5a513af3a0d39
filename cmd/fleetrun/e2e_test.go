package main

// End-to-end tests of `fleetrun serve`: the real binary (this test binary re-executing itself as
// fleetrun) on a free loopback port, real scripts, real child processes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

const execEnv = "FLEETRUN_E2E_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		// Act as the fleetrun binary: os.Args[1:] are fleetrun's arguments.
		main()
		return
	}
	os.Exit(m.Run())
}

// server is a running `fleetrun serve` process.
type server struct {
	t       *testing.T
	url     string
	cmd     *exec.Cmd
	dataDir string
	scripts string
	pids    string
	logs    *lockedWriter
	exited  chan struct{}
}

// startServer runs fleetrun serve on a free port with the given data directory and script
// root, and stops it when the test ends.
func startServer(t *testing.T, dataDir, scripts string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dataDir, "--script-root", scripts, "--grace", "500ms"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	pids := t.TempDir()
	cmd.Env = append(os.Environ(), execEnv+"=1", "PIDS="+pids)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, dataDir: dataDir, scripts: scripts, pids: pids, logs: logs, exited: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				urls <- u
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(s.exited) }()
	select {
	case s.url = <-urls:
	case <-s.exited:
		t.Fatalf("fleetrun serve exited before listening:\n%s", logs)
	case <-time.After(30 * time.Second):
		s.kill()
		t.Fatalf("fleetrun serve did not start:\n%s", logs)
	}
	t.Cleanup(s.stop)
	return s
}

// stop ends the server gracefully (SIGTERM) and waits for it.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.kill()
	}
}

// kill ends the server with SIGKILL, as a crash would.
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (s *server) do(method, path string, body any, header ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *server) submit(req api.SubmitRequest, header ...string) api.Task {
	s.t.Helper()
	r := s.do(http.MethodPost, "/tasks", req, header...)
	if r.status != http.StatusAccepted {
		s.t.Fatalf("submit: %d %s", r.status, r.body)
	}
	var task api.Task
	r.decode(s.t, &task)
	return task
}

func (s *server) get(id string) api.Task {
	s.t.Helper()
	r := s.do(http.MethodGet, "/tasks/"+id, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("get %s: %d %s", id, r.status, r.body)
	}
	var task api.Task
	r.decode(s.t, &task)
	return task
}

// waitFor polls the task until cond holds, failing the test at the deadline.
func (s *server) waitFor(id string, what string, cond func(api.Task) bool) api.Task {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		task := s.get(id)
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("task %s never became %s; last: %+v\nserver log:\n%s", id, what, task, s.logs)
		}
		// Long-poll rather than sleep: returns as soon as the task changes.
		s.do(http.MethodGet, "/tasks/"+id, nil, "Prefer", "wait=2", "If-None-Match", fmt.Sprintf("%q", fmt.Sprint(task.Version)))
	}
}

func (s *server) waitStatus(id, status string) api.Task {
	s.t.Helper()
	return s.waitFor(id, status, func(t api.Task) bool { return t.Status == status })
}

// lockedWriter lets the server's stderr be read while it is written.
type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// scriptRoot writes the test scripts into a fresh directory.
func scriptRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	scripts := map[string]string{
		// Exits 7 on device d2, 0 elsewhere.
		"flaky.sh": "#!/bin/sh\necho \"run on $FLEETRUN_DEVICE_ID\"\n[ \"$FLEETRUN_DEVICE_ID\" = d2 ] && { echo broken >&2; exit 7; }\nexit 0\n",
		// Records its own pid and its child's, then waits on a long sleep.
		"long.sh": "#!/bin/sh\necho $$ > \"$PIDS/$FLEETRUN_DEVICE_ID.pid\"\nsleep 300 &\necho $! > \"$PIDS/$FLEETRUN_DEVICE_ID.child\"\nwait\n",
		"ok.sh":   "#!/bin/sh\necho ok\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
