package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

// dropProxy forwards TCP connections to a server, and closes the first drops connections that
// carry a long-poll (Prefer: wait) as soon as the request has gone through, while the server
// holds it: the client sees its connection die in the middle of a wait.
type dropProxy struct {
	ln      net.Listener
	target  string
	budget  atomic.Int32
	dropped atomic.Int32
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

func startDropProxy(t *testing.T, target string, drops int) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: strings.TrimPrefix(target, "http://"), conns: make(map[net.Conn]bool)}
	p.budget.Store(int32(drops))
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		// Idle keep-alive connections of the client would hold their forwarders open.
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *dropProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *dropProxy) serve() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(conn)
		}()
	}
}

func (p *dropProxy) forward(down net.Conn) {
	p.mu.Lock()
	p.conns[down] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, down)
		p.mu.Unlock()
		down.Close()
	}()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		io.Copy(down, up)
		down.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := down.Read(buf)
		if n > 0 {
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
			if bytes.Contains(buf[:n], []byte("Prefer: wait=")) && p.budget.Add(-1) >= 0 {
				// The request reached the server, which holds it: cut both sides.
				p.dropped.Add(1)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestE2EDroppedConnectionDuringWaitIsRetried(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	proxy := startDropProxy(t, f.url, 2)
	gate := filepath.Join(t.TempDir(), "open")
	id := f.submit(t, "--devices", "d1,d2", "--script", "gate.sh", "--arg", gate)
	waiting := async(t.Context(), proxy.url(), "wait", id)

	clocktest.Eventually(t, 20*time.Second, func() error {
		if n := proxy.dropped.Load(); n < 2 {
			return fmt.Errorf("the proxy dropped %d long-polls, want 2", n)
		}
		return nil
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := await(t, waiting)
	if r.code != ExitOK {
		t.Fatalf("wait through a dropping proxy exited %d, want 0\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "task "+id+" completed in ") {
		t.Errorf("wait did not report completion:\n%s", r.stdout)
	}
}

func TestE2EInterruptWithCancelOnInterruptCancels(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	ctx, interrupt := context.WithCancel(t.Context())
	defer interrupt()
	waiting := async(ctx, f.url, "submit", "--devices", "d1,d2,d3", "--script", "slow.sh", "--wait", "--cancel-on-interrupt")
	id := f.onlyTask(t)
	f.waitFor(t, id, "devices running", running)
	interrupt() // what SIGINT does to the context main.go passes in
	r := await(t, waiting)
	if r.code != ExitCancelled {
		t.Fatalf("interrupted submit --wait exited %d, want 3\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if task, err := f.client.Get(t.Context(), id); err != nil || task.Status != api.StatusCancelled {
		t.Errorf("task = %+v, %v; want cancelled", task, err)
	}
	if !strings.Contains(r.stdout, "task "+id+" cancelled in ") {
		t.Errorf("no summary of the cancelled task:\n%s", r.stdout)
	}
}

func TestE2EInterruptAsksOnATerminal(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	for _, tc := range []struct {
		answer string
		code   int
		status string
	}{
		{"y\n", ExitCancelled, api.StatusCancelled},
		{"n\n", ExitInterrupted, api.StatusRunning},
		{"", ExitInterrupted, api.StatusRunning}, // end of input: no
	} {
		id := f.submit(t, "--devices", "d1", "--script", "slow.sh")
		a, stdout, stderr := testApp(f.url, strings.NewReader(tc.answer))
		a.isTerminal = func(s any) bool { return s == a.stdin }
		ctx, interrupt := context.WithCancel(t.Context())
		done := make(chan int, 1)
		go func() { done <- a.main(ctx, []string{"wait", id}) }()
		f.waitFor(t, id, "devices running", running)
		interrupt()
		var code int
		select {
		case code = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("wait did not end within 30s of the interrupt")
		}
		if code != tc.code {
			t.Errorf("answer %q: exit %d, want %d\nstdout: %s\nstderr: %s", tc.answer, code, tc.code, stdout, stderr)
		}
		if !strings.Contains(stderr.String(), "Cancel task "+id+"? [y/N] ") {
			t.Errorf("answer %q: no question on stderr: %q", tc.answer, stderr)
		}
		task := f.waitFor(t, id, "status "+tc.status, func(task *api.Task) bool { return task.Status == tc.status })
		if tc.status == api.StatusRunning {
			if !strings.Contains(stderr.String(), "fleetrun wait "+id) {
				t.Errorf("answer %q: stderr does not say how to follow the task again: %q", tc.answer, stderr)
			}
			if _, err := f.client.Cancel(t.Context(), task.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestE2EInterruptWithoutATerminalLeavesTheTaskRunning(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	id := f.submit(t, "--devices", "d1", "--script", "slow.sh")
	ctx, interrupt := context.WithCancel(t.Context())
	waiting := async(ctx, f.url, "wait", id)
	f.waitFor(t, id, "devices running", running)
	interrupt()
	r := await(t, waiting)
	if r.code != ExitInterrupted || strings.Contains(r.stderr, "Cancel task") {
		t.Errorf("wait = %d %q, want 130 without a question", r.code, r.stderr)
	}
	if task, err := f.client.Get(t.Context(), id); err != nil || api.Terminal(task.Status) || task.Status == api.StatusCancelling {
		t.Errorf("task = %+v, %v; want it left running", task, err)
	}
	f.client.Cancel(t.Context(), id)
}

// onlyTask waits until the server has exactly one task and returns its id.
func (f *fleet) onlyTask(t *testing.T) string {
	t.Helper()
	var ids []string
	clocktest.Eventually(t, 20*time.Second, func() error {
		ids = nil
		for task, err := range f.client.List(t.Context(), client.ListOptions{}) {
			if err != nil {
				return err
			}
			ids = append(ids, task.ID)
		}
		if len(ids) != 1 {
			return fmt.Errorf("the server has tasks %q, want one", ids)
		}
		return nil
	})
	return ids[0]
}
