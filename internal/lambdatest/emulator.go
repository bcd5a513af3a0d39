package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
)

// Emulator is one aws-lambda-rie running one bootstrap. Like Lambda's own execution
// environment it takes one invocation at a time; Invoke serialises callers.
type Emulator struct {
	// URL is the emulator's invoke endpoint.
	URL  string
	name string
	cmd  *exec.Cmd
	out  *logBuffer
	mu   sync.Mutex // one invocation at a time
}

// Start runs bootstrap under the emulator with exactly the environment env (plus PATH), on
// free loopback ports, and waits until it accepts invocations. The emulator and the bootstrap
// it started are stopped when the test ends. name labels the emulator's log lines.
//
// A port found free can be taken by another process before the emulator binds it; an emulator
// that exits at start because its address is in use is started again on other ports.
func Start(t testing.TB, name, bootstrap string, env map[string]string) *Emulator {
	t.Helper()
	for attempt := 1; ; attempt++ {
		e, err := start(t, name, bootstrap, env)
		if err == nil {
			return e
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%v; starting it again on other ports", err)
	}
}

// start makes one attempt of Start. An emulator that exits at start is an error; one that does
// not listen within the deadline fails the test.
func start(t testing.TB, name, bootstrap string, env map[string]string) (*Emulator, error) {
	t.Helper()
	invokeAddr, apiAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(RIE(t), "--runtime-interface-emulator-address", invokeAddr,
		"--runtime-api-address", apiAddr, "--log-level", "error", bootstrap)
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "AWS_LAMBDA_FUNCTION_NAME=" + name}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	e := &Emulator{URL: "http://" + invokeAddr + "/2015-03-31/functions/function/invocations", name: name,
		cmd: cmd, out: &logBuffer{}}
	cmd.Stdout, cmd.Stderr = e.out, e.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start aws-lambda-rie for %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		e.stop()
		<-exited
		if t.Failed() || os.Getenv("FLEETRUN_LAMBDA_LOG") != "" {
			t.Logf("%s emulator log:\n%s", name, e.Logs())
		}
	})
	var early error
	clocktest.Eventually(t, 30*time.Second, func() error {
		select {
		case <-exited:
			early = fmt.Errorf("aws-lambda-rie for %s exited at start:\n%s", name, e.Logs())
			return nil
		default:
		}
		c, err := net.DialTimeout("tcp", invokeAddr, time.Second)
		if err != nil {
			return fmt.Errorf("aws-lambda-rie for %s does not listen on %s: %w\n%s", name, invokeAddr, err, e.Logs())
		}
		c.Close()
		return nil
	})
	if early != nil {
		return nil, early
	}
	return e, nil
}

// stop kills the emulator and the runtime process it started. The emulator puts the runtime in
// a process group of its own, so the runtime's pid is read from the emulator's children first.
func (e *Emulator) stop() {
	if e.cmd.Process == nil {
		return
	}
	pid := e.cmd.Process.Pid
	children := childPIDs(pid)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
}

// childPIDs lists the direct children of process pid, from /proc.
func childPIDs(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(field); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// FunctionError is an invocation the function failed: it returned an error, panicked, or
// timed out.
type FunctionError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("%s: %s: %s", errFunction, e.Type, e.Message)
}

// Invoke sends one event and returns the function's response. A function error is returned as
// a *FunctionError.
func (e *Emulator) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	return e.InvokeAs(ctx, "", event)
}

// InvokeAs is Invoke with the invocation's request id, which the emulator's START, END and
// REPORT lines and the function's log lines then carry; "" lets the emulator choose one.
func (e *Emulator) InvokeAs(ctx context.Context, requestID string, event []byte) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(event))
	if err != nil {
		return nil, err
	}
	if requestID != "" {
		req.Header.Set("X-Amzn-RequestId", requestID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", e.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: read the response: %w", e.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("invoke %s: emulator answered %s: %s", e.name, resp.Status, body)
	}
	var fe FunctionError
	if json.Unmarshal(body, &fe) == nil && fe.Type != "" && fe.Message != "" {
		return nil, &fe
	}
	if strings.HasPrefix(string(body), "Task timed out") {
		return nil, &FunctionError{Type: "Timeout", Message: string(body)}
	}
	return body, nil
}

// InvokeJSON invokes with v encoded as JSON and decodes the response into out (when not nil).
func (e *Emulator) InvokeJSON(ctx context.Context, v, out any) error {
	event, err := json.Marshal(v)
	if err != nil {
		return err
	}
	body, err := e.Invoke(ctx, event)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("invoke %s: decode %s: %w", e.name, body, err)
	}
	return nil
}

var reportLine = regexp.MustCompile(`REPORT RequestId: \S+\s+(?:Init Duration: ([0-9.]+) ms\s+)?Duration: ([0-9.]+) ms`)

// Report is one REPORT line of the emulator: how long an invocation took, and for the first
// one, the Init Duration the emulator measured.
type Report struct {
	InitDuration time.Duration
	Duration     time.Duration
}

// Reports returns the REPORT lines printed so far, in order. The emulator starts the runtime
// without waiting for it to be ready, so its Init Duration covers little of the bootstrap's
// own start; that time falls into the first invocation's Duration instead.
func (e *Emulator) Reports() []Report {
	var out []Report
	for _, m := range reportLine.FindAllStringSubmatch(e.Logs(), -1) {
		out = append(out, Report{InitDuration: millis(m[1]), Duration: millis(m[2])})
	}
	return out
}

// WaitReports waits until the emulator has printed n REPORT lines and returns them: it prints
// each one just after the invocation's response has been sent.
func (e *Emulator) WaitReports(n int, within time.Duration) ([]Report, error) {
	deadline := time.Now().Add(within)
	for {
		r := e.Reports()
		if len(r) >= n {
			return r, nil
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s printed %d REPORT lines in %v, want %d", e.name, len(r), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func millis(s string) time.Duration {
	ms, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// Logs returns everything the emulator and the function wrote so far.
func (e *Emulator) Logs() string { return e.out.String() }

// logBuffer is an io.Writer safe for the emulator's concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
