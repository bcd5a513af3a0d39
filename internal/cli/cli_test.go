package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// syncBuffer is a bytes.Buffer safe for a command writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is what one run of the command left.
type result struct {
	code           int
	stdout, stderr string
}

// runApp runs the command with args against endpoint, never on a terminal, with quick
// retries.
func runApp(ctx context.Context, endpoint string, stdin io.Reader, args ...string) result {
	a, stdout, stderr := testApp(endpoint, stdin)
	code := a.main(ctx, args)
	return result{code, stdout.String(), stderr.String()}
}

func testApp(endpoint string, stdin io.Reader) (*app, *syncBuffer, *syncBuffer) {
	var stdout, stderr syncBuffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	env := map[string]string{"FLEETRUN_ENDPOINT": endpoint}
	return &app{stdin: stdin, stdout: &stdout, stderr: &stderr, env: func(k string) string { return env[k] },
		now: time.Now, isTerminal: func(any) bool { return false }, termWidth: func(any) int { return 80 }, cancelWait: 30 * time.Second,
		clientOptions: []client.Option{client.WithRetry(client.RetryPolicy{MaxAttempts: 4, BaseDelay: 20 * time.Millisecond,
			MaxDelay: 100 * time.Millisecond, MaxRetryAfter: 100 * time.Millisecond})},
	}, &stdout, &stderr
}

func TestHelpDocumentsCommandsAndExitCodes(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"--help"}, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	if code != ExitOK {
		t.Fatalf("fleetrun --help exited %d, want 0", code)
	}
	out := stdout.String()
	for _, want := range []string{"serve", "submit", "status", "wait", "cancel", "ls", "devices", "output", "ui",
		"FLEETRUN_ENDPOINT", "FLEETRUN_TOKEN", "--sigv4", "--json", "--cancel-on-interrupt", "Exit codes:",
		"\n  0 ", "\n  1 ", "\n  2 ", "\n  3 ", "\n  4 ", "\n  130 "} {
		if !strings.Contains(out, want) {
			t.Errorf("help does not mention %q", want)
		}
	}
	var sub bytes.Buffer
	if code := Main(t.Context(), []string{"submit", "--help"}, strings.NewReader(""), &sub, &sub, func(string) string { return "" }); code != ExitOK {
		t.Errorf("fleetrun submit --help exited %d, want 0", code)
	}
	for _, want := range []string{"-devices-file", "-max-concurrency", "-idempotency-key", "-wait", "-cancel-on-interrupt"} {
		if !strings.Contains(sub.String(), want) {
			t.Errorf("submit help does not mention %s", want)
		}
	}
}

func TestUsageErrorsExit2WithoutCallingTheServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the server was called: %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	cases := []struct {
		args []string
		want string
	}{
		{nil, "Usage: fleetrun"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"status"}, "missing argument"},
		{[]string{"status", "a", "b"}, `unexpected argument "b"`},
		{[]string{"output", "a"}, "missing argument"},
		{[]string{"status", "a", "--nope"}, "unknown flag: --nope"},
		{[]string{"submit", "--script", "x.sh"}, "no devices"},
		{[]string{"submit", "--devices", "a"}, "no script"},
		{[]string{"submit", "--devices", "a", "--script", "x.sh", "--timeout", "-3"}, "--timeout"},
		{[]string{"submit", "--devices", "a", "--script", "x.sh", "--timeout", "1.5s"}, "--timeout"},
		{[]string{"submit", "--devices", "a", "--script", "x.sh", "--delivery-timeout", "0"}, "--delivery-timeout"},
		{[]string{"relaunch", "T1", "--failed", "--delivery-timeout", "soon"}, "--delivery-timeout"},
		{[]string{"submit", "--devices", "a", "--script", "x.sh", "--cancel-on-interrupt"}, "needs --wait"},
		{[]string{"submit", "--devices-file", "/nonexistent/devices.txt", "--script", "x.sh"}, "--devices-file"},
		{[]string{"ls", "--limit", "-1"}, "--limit"},
		{[]string{"status", "x", "--endpoint", "ftp://host"}, "not an http(s) URL"},
		{[]string{"status", "x", "--sigv4", "--token", "t"}, "cannot be used together"},
		{[]string{"ui", "--addr", "0.0.0.0:0"}, "not a loopback address"},
		{[]string{"ui", "--addr", ":8081"}, "not a loopback address"},
		{[]string{"ui", "--addr", "192.0.2.1:8081"}, "not a loopback address"},
		{[]string{"ui", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		r := runApp(t.Context(), srv.URL, nil, tc.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("fleetrun %q = %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestParseAllowsFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args     []string
		want     []string
		json     bool
		endpoint string
	}{
		{[]string{"x", "ID"}, []string{"ID"}, false, ""},
		{[]string{"x", "ID", "--json"}, []string{"ID"}, true, ""},
		{[]string{"x", "--json", "ID", "--endpoint", "http://h"}, []string{"ID"}, true, "http://h"},
		{[]string{"x", "ID", "DEV", "--endpoint=http://h"}, []string{"ID", "DEV"}, false, "http://h"},
		{[]string{"x", "--json", "--", "--odd-id"}, []string{"--odd-id"}, true, ""},
		// The common flags are global: before the command too.
		{[]string{"--endpoint", "http://h", "x", "ID"}, []string{"ID"}, false, "http://h"},
		{[]string{"--json", "--endpoint=http://h", "x", "ID", "DEV"}, []string{"ID", "DEV"}, true, "http://h"},
	}
	for _, tc := range cases {
		a, _, stderr := testApp("", nil)
		root := a.newRoot()
		var got []string
		root.AddCommand(&cobra.Command{Use: "x", RunE: func(_ *cobra.Command, args []string) error { got = args; return nil }})
		root.SetArgs(tc.args)
		err := root.Execute()
		c := a.common
		if err != nil || !slices.Equal(got, tc.want) || c.json != tc.json || c.endpoint != tc.endpoint {
			t.Errorf("fleetrun %q: args %q, %v %s, json %v, endpoint %q; want %q, json %v, endpoint %q",
				tc.args, got, err, stderr, c.json, c.endpoint, tc.want, tc.json, tc.endpoint)
		}
	}
}

func TestExecuteAPIRegion(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"abc123.execute-api.eu-west-1.amazonaws.com": "eu-west-1",
		"ABC123.EXECUTE-API.US-EAST-2.AMAZONAWS.COM": "us-east-2",
		"127.0.0.1":                        "",
		"api.example.com":                  "",
		"execute-api.amazonaws.com":        "",
		"x.execute-api.eu-west-1.evil.com": "",
	} {
		if got := executeAPIRegion(host); got != want {
			t.Errorf("executeAPIRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestTaskExit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status string
		counts api.DeviceCounts
		want   int
	}{
		{api.StatusCompleted, api.DeviceCounts{Total: 2, Succeeded: 2}, ExitOK},
		{api.StatusCompleted, api.DeviceCounts{Total: 2, Succeeded: 1, Failed: 1}, ExitTaskFailed},
		{api.StatusCompleted, api.DeviceCounts{Total: 2, Succeeded: 1, TimedOut: 1}, ExitTaskFailed},
		{api.StatusCompleted, api.DeviceCounts{Total: 2, Succeeded: 1, Undeliverable: 1}, ExitTaskFailed},
		{api.StatusFailed, api.DeviceCounts{Total: 2, Failed: 1, Cancelled: 1}, ExitTaskFailed},
		{api.StatusCancelled, api.DeviceCounts{Total: 2, Succeeded: 1, Cancelled: 1}, ExitCancelled},
		{api.StatusTimedOut, api.DeviceCounts{Total: 2, TimedOut: 2}, ExitCancelled},
	}
	for _, tc := range cases {
		if got := taskExit(&api.Task{Status: tc.status, Progress: api.Progress{Devices: tc.counts}}); got != tc.want {
			t.Errorf("taskExit(%s, %+v) = %d, want %d", tc.status, tc.counts, got, tc.want)
		}
	}
}

func TestLineProgressPrintsOnlyChanges(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	clock := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	p := &lineProgress{w: &out, now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	step := func(status string, c api.DeviceCounts) {
		p.Update(&api.Task{ID: "T1", Status: status, Progress: api.Progress{Devices: c}})
	}
	step(api.StatusPending, api.DeviceCounts{Total: 3, Pending: 3})
	step(api.StatusRunning, api.DeviceCounts{Total: 3, Running: 3})
	step(api.StatusRunning, api.DeviceCounts{Total: 3, Running: 2, Succeeded: 1})
	step(api.StatusRunning, api.DeviceCounts{Total: 3, Running: 2, Succeeded: 1}) // a new version, nothing to show
	step(api.StatusRunning, api.DeviceCounts{Total: 3, Running: 1, Succeeded: 1, Failed: 1})
	step(api.StatusCompleted, api.DeviceCounts{Total: 3, Succeeded: 1, Failed: 1, TimedOut: 1})
	p.Close()
	want := `2025-06-01T12:00:01Z T1 pending 0/3 done
2025-06-01T12:00:02Z T1 running 0/3 done
2025-06-01T12:00:03Z T1 running 1/3 done (1 succeeded)
2025-06-01T12:00:04Z T1 running 2/3 done (1 succeeded, 1 failed)
2025-06-01T12:00:05Z T1 completed 3/3 done (1 succeeded, 1 failed, 1 timed out)
`
	if out.String() != want {
		t.Errorf("progress lines:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestBarProgressDrawsCounts(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := newBarProgress(&out)
	p.Update(&api.Task{ID: "T1", Status: api.StatusRunning, Progress: api.Progress{Devices: api.DeviceCounts{Total: 4, Running: 4}}})
	p.Update(&api.Task{ID: "T1", Status: api.StatusRunning, Progress: api.Progress{Devices: api.DeviceCounts{Total: 4, Running: 1, Succeeded: 2, Failed: 1}}})
	p.Close()
	for _, want := range []string{"running (2 succeeded, 1 failed)", "3/4", "75%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bar output %q does not contain %q", out.String(), want)
		}
	}
	if !strings.HasSuffix(out.String(), "\n") {
		t.Errorf("bar output does not end on a fresh line: %q", out.String())
	}
}

func TestDevicesFile(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "devices.txt")
	if err := os.WriteFile(name, []byte("# fleet\na\n\nb, c  # rack 2\n  d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, _, _ := testApp("", strings.NewReader("x\ny\n"))
	got, err := a.readDevices(name)
	if want := []string{"a", "b", "c", "d"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("readDevices(file) = %q, %v; want %q", got, err, want)
	}
	got, err = a.readDevices("-")
	if want := []string{"x", "y"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("readDevices(-) = %q, %v; want %q", got, err, want)
	}
}

func TestServerAnswersMapToExitCodes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := api.Problem{Type: api.ProblemInternal, Title: "Internal error", Status: 500, RequestID: "req-9"}
		if strings.HasSuffix(r.URL.Path, "/missing") {
			p = api.Problem{Type: api.ProblemNotFound, Title: "Not found", Status: 404, Detail: "no task missing"}
		}
		w.Header().Set("Content-Type", api.MediaProblem)
		w.WriteHeader(p.Status)
		json.NewEncoder(w).Encode(p)
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	cases := []struct {
		endpoint string
		args     []string
		code     int
		stderr   string
	}{
		{srv.URL, []string{"status", "missing"}, ExitUsage, "Not found (404): no task missing"},
		{srv.URL, []string{"wait", "missing"}, ExitUsage, "Not found (404)"},
		{srv.URL, []string{"status", "boom"}, ExitUnavailable, "request id: req-9"},
		{srv.URL, []string{"ls"}, ExitUnavailable, "Internal error (500)"},
		{closed, []string{"status", "x"}, ExitUnavailable, "connect"},
		{closed, []string{"wait", "x"}, ExitUnavailable, "connect"},
	}
	for _, tc := range cases {
		r := runApp(t.Context(), tc.endpoint, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("fleetrun %q = %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
}

func TestSigV4FlagSignsWithTheAWSCredentialChain(t *testing.T) {
	// t.Setenv: the AWS credential chain reads the process environment.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCLI")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", api.MediaJSON)
		json.NewEncoder(w).Encode(api.Task{ID: "t1", Status: api.StatusRunning})
	}))
	defer srv.Close()
	r := runApp(t.Context(), srv.URL, nil, "status", "t1", "--sigv4", "--region", "ap-south-1")
	if r.code != ExitOK {
		t.Fatalf("status exited %d: %s", r.code, r.stderr)
	}
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDCLI/") || !strings.Contains(auth, "/ap-south-1/execute-api/aws4_request") {
		t.Errorf("Authorization = %q, want a SigV4 signature for execute-api in ap-south-1", auth)
	}
}
