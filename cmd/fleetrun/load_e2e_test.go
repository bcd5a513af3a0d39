package main

// Heavy end-to-end tests: a server under a load that used to crash or starve it. Each is
// skipped by `make unit` (-short) and runs in `make test`.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

func TestTenThousandDevicesRunUnderMaxProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 500 processes at once; run without -short")
	}
	t.Parallel()
	const maxProcs = 500
	scripts := scriptRoot(t)
	writeScript(t, scripts, "sleep30.sh", "#!/bin/sh\nexec sleep 30\n")
	s := startServer(t, t.TempDir(), scripts, "--max-procs", strconv.Itoa(maxProcs))

	// The server must answer its health check within a second throughout.
	health := watchHealth(t, s.url)
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%05d", i)
	}
	task := s.submit(api.SubmitRequest{DeviceIDs: ids, ScriptURL: "sleep30.sh", MaxConcurrency: "100%"})

	// The task fills the server's cap and no more, and says why the rest wait.
	peak := 0
	sample := func() {
		n := len(markedProcesses(t, task.ID))
		peak = max(peak, n)
		if n > maxProcs {
			t.Errorf("%d scripts of the task run at once, more than --max-procs %d", n, maxProcs)
		}
	}
	full := s.waitForSampling(task.ID, "running on 500 devices", sample, func(t api.Task) bool {
		return t.Progress.Devices.Running == maxProcs
	})
	if !strings.Contains(full.Progress.CurrentStep, "waiting for a free slot") || full.Progress.Devices.Pending != len(ids)-maxProcs {
		t.Errorf("at the cap: step %q, %d pending; want it to say devices wait, with %d pending",
			full.Progress.CurrentStep, full.Progress.Devices.Pending, len(ids)-maxProcs)
	}
	// No thread per script: a waiting script costs a goroutine, not an OS thread.
	threadsAtCap := threads(t, s.cmd.Process.Pid)
	if threadsAtCap >= maxProcs/2 {
		t.Errorf("the server has %d threads with %d scripts running", threadsAtCap, maxProcs)
	}

	if r := s.do(http.MethodDelete, "/tasks/"+task.ID, nil); r.status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	done := s.waitForSampling(task.ID, "cancelled", sample, func(t api.Task) bool { return t.Status == api.StatusCancelled })
	if done.Progress.Devices.Cancelled != len(ids) {
		t.Errorf("cancelled %+v, want every device cancelled", done.Progress.Devices)
	}
	waitNoMarked(t, task.ID)
	slowest := health.stop()
	t.Logf("peak %d scripts at once; slowest health check %v; %d threads with %d scripts running", peak, slowest, threadsAtCap, maxProcs)
}

func TestIdleAndSlowConnectionsDoNotStarveCallers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,200 connections; run without -short")
	}
	t.Parallel()
	const idleTimeout, bodyTimeout = 3 * time.Second, 2 * time.Second
	s := startServer(t, t.TempDir(), scriptRoot(t), "--token", "alice=alice-secret",
		"--idle-timeout", idleTimeout.String(), "--body-timeout", bodyTimeout.String())
	addr := strings.TrimPrefix(s.url, "http://")

	// 2,000 keep-alive connections, each used once and then left idle.
	idle := make([]net.Conn, 0, 2000)
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for range 2000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(idle), err)
		}
		idle = append(idle, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	}
	for i, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("idle connection %d: %v %v", i, res, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
	}
	idleSince := time.Now()

	// 200 authenticated POSTs whose body never finishes.
	slow := make([]net.Conn, 0, 200)
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", len(slow), err)
		}
		slow = append(slow, c)
		fmt.Fprintf(c, "POST /tasks HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer alice-secret\r\n"+
			"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"deviceIds\":[", addr)
	}

	// A caller still gets through, at once.
	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, s.url+"/tasks", nil)
	req.Header.Set("Authorization", "Bearer alice-secret")
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("an authenticated GET behind 2,200 held connections: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("an authenticated GET: %d", res.StatusCode)
	}
	t.Logf("an authenticated GET answered in %v behind 2,000 idle connections and 200 slow bodies", time.Since(start))

	// Every slow body is answered 408 and its connection closed.
	var wg sync.WaitGroup
	var timedOut, idleClosed atomic.Int64
	for _, c := range slow {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(bodyTimeout + 10*time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil && res.StatusCode == http.StatusRequestTimeout && res.Close {
				timedOut.Add(1)
			}
		})
	}
	// Every idle connection is closed by the server after the idle timeout.
	for _, c := range idle {
		wg.Go(func() {
			_ = c.SetReadDeadline(idleSince.Add(idleTimeout + 10*time.Second))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
				idleClosed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := timedOut.Load(); n != int64(len(slow)) {
		t.Errorf("%d of %d slow bodies were answered 408 with the connection closed", n, len(slow))
	}
	if n := idleClosed.Load(); n != int64(len(idle)) {
		t.Errorf("%d of %d idle connections were closed by the server", n, len(idle))
	}
	if n := countTasksWith(t, s, "Bearer alice-secret"); n != 0 {
		t.Errorf("%d tasks stored from bodies that never arrived", n)
	}
}

func TestAdmissionRefusesSubmitsPastTheBound(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t), "--max-procs", "1", "--max-pending", "3")
	first := s.submit(api.SubmitRequest{DeviceIDs: []string{"a1", "a2", "a3"}, ScriptURL: "long.sh"})
	s.waitFor(first.ID, "running on one device", func(t api.Task) bool { return t.Progress.Devices.Running == 1 })
	second := s.submit(api.SubmitRequest{DeviceIDs: []string{"b1"}, ScriptURL: "long.sh"})
	// The second task waits for the server's only slot, and says so.
	s.waitFor(second.ID, "waiting for a slot", func(t api.Task) bool {
		return strings.Contains(t.Progress.CurrentStep, "waiting for a free slot")
	})

	// Three devices wait: one more is past the bound.
	r := s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"c1"}, ScriptURL: "ok.sh"}, api.HeaderIdempotencyKey, "third")
	var p api.Problem
	r.decode(t, &p)
	if r.status != http.StatusServiceUnavailable || p.Type != api.ProblemUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("a submit past the bound: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	if n := countTasks(t, s); n != 2 {
		t.Fatalf("%d tasks stored, want the 2 admitted", n)
	}

	// Once the queue drains, the same request is accepted. The count follows the engine's
	// writes a moment after a reader can see them, so the request is repeated as a client
	// honouring Retry-After would.
	s.do(http.MethodDelete, "/tasks/"+first.ID, nil)
	s.waitStatus(first.ID, api.StatusCancelled)
	var third api.Task
	clocktest.Eventually(t, 30*time.Second, func() error {
		r := s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"c1"}, ScriptURL: "ok.sh"}, api.HeaderIdempotencyKey, "third")
		if r.status != http.StatusAccepted {
			return fmt.Errorf("submit once the queue drained: %d %s", r.status, r.body)
		}
		r.decode(t, &third)
		return nil
	})
	s.do(http.MethodDelete, "/tasks/"+second.ID, nil)
	s.waitStatus(third.ID, api.StatusCompleted)
}

func TestLinksNeverComeFromTheCallersHost(t *testing.T) {
	t.Parallel()
	scripts := scriptRoot(t)
	for _, tc := range []struct {
		name  string
		flags []string
		want  func(s *server) string
	}{
		{"the listening address by default", nil, func(s *server) string { return s.url }},
		{"--public-url", []string{"--public-url", "https://fleet.example.com/"}, func(*server) string { return "https://fleet.example.com" }},
		{"--trust-proxy", []string{"--trust-proxy"}, func(*server) string { return "https://proxied.example" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, t.TempDir(), scripts, tc.flags...)
			addr := strings.TrimPrefix(s.url, "http://")
			body := `{"deviceIds":["a"],"scriptUrl":"ok.sh"}`
			res := rawHTTP(t, addr, fmt.Sprintf("POST /tasks HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Proto: https\r\n"+
				"X-Forwarded-Host: proxied.example\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("submit: %d", res.StatusCode)
			}
			if loc, want := res.Header.Get("Location"), tc.want(s)+"/tasks/"; !strings.HasPrefix(loc, want) {
				t.Errorf("Location %q, want it under %q", loc, want)
			}
			// An empty Host is refused, with a problem.
			res = rawHTTP(t, addr, "GET /tasks HTTP/1.1\r\nHost:\r\n\r\n")
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Content-Type") != api.MediaProblem {
				t.Errorf("an empty Host: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
			}
		})
	}
}

func TestEventsAfterTheEndWithAnIDAheadSendTheFinalStateAndClose(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	task := s.submit(api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "ok.sh"})
	done := s.waitStatus(task.ID, api.StatusCompleted)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/tasks/"+task.ID+"/events", nil)
	req.Header.Set("Last-Event-ID", "1000")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	stream, err := io.ReadAll(res.Body) // ends only when the server closes the stream
	if err != nil {
		t.Fatalf("the stream did not end: %v", err)
	}
	want := fmt.Sprintf("retry: 1000\n\nid: %d\nevent: task\n", done.Version)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(stream), want) || !bytes.Contains(stream, []byte(`"status":"completed"`)) {
		t.Errorf("status %d, stream %q; want the completed state as event %d", res.StatusCode, stream, done.Version)
	}
}

// health polls /healthz in the background, each answer due within a second.
type health struct {
	t       *testing.T
	stopped chan struct{}
	done    chan struct{}
	slowest time.Duration
}

func watchHealth(t *testing.T, url string) *health {
	h := &health{t: t, stopped: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.stopped:
				return
			case <-time.After(200 * time.Millisecond):
			}
			start := time.Now()
			res, err := client.Get(url + "/healthz")
			if err != nil {
				t.Errorf("%s: /healthz did not answer within a second: %v", time.Now().Format("15:04:05.000"), err)
				continue
			}
			res.Body.Close()
			h.slowest = max(h.slowest, time.Since(start))
			if res.StatusCode != http.StatusOK {
				t.Errorf("/healthz: %d", res.StatusCode)
			}
		}
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

// stop ends the polling and returns the slowest answer.
func (h *health) stop() time.Duration {
	select {
	case <-h.stopped:
	default:
		close(h.stopped)
	}
	<-h.done
	return h.slowest
}

// waitForSampling waits, up to 90 s, until task id meets cond, calling sample between reads.
func (s *server) waitForSampling(id, what string, sample func(), cond func(api.Task) bool) api.Task {
	s.t.Helper()
	var task api.Task
	clocktest.Eventually(s.t, 90*time.Second, func() error {
		sample()
		if task = s.get(id); !cond(task) {
			return fmt.Errorf("task %s is not %s: %+v", id, what, task.Progress)
		}
		return nil
	})
	return task
}

// markedProcesses returns the live processes started for task id, by the FLEETRUN_TASK_ID in
// their environment.
func markedProcesses(t *testing.T, id string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	mark := []byte("FLEETRUN_TASK_ID=" + id + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, mark) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitNoMarked waits until no process of task id is left.
func waitNoMarked(t *testing.T, id string) {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range markedProcesses(t, id) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // what a failed test leaves behind
		}
	})
	clocktest.Eventually(t, 20*time.Second, func() error {
		if pids := markedProcesses(t, id); len(pids) > 0 {
			return fmt.Errorf("%d processes of task %s are still running: %v", len(pids), id, pids[:min(len(pids), 10)])
		}
		return nil
	})
}

// threads returns the number of threads of process pid.
func threads(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no thread count for %d", pid)
	return 0
}

// rawHTTP sends text as one request on a new connection to addr and reads the answer.
func rawHTTP(t *testing.T, addr, text string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// countTasksWith counts the tasks the owner of authorization can list.
func countTasksWith(t *testing.T, s *server, authorization string) int {
	t.Helper()
	r := s.do(http.MethodGet, "/tasks?limit=1000", nil, "Authorization", authorization)
	var list api.TaskList
	r.decode(t, &list)
	return len(list.Items)
}

// writeScript adds an executable script to a script root.
func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}
