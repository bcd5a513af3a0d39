package cli

// End-to-end tests: the command against the real `fleetrun serve` (its Main, in this process)
// on a free loopback port, running real scripts.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/serve"
)

// scripts of the test fleet, written into each server's script root.
var scripts = map[string]string{
	"ok.sh": `#!/bin/sh
echo "hello from $FLEETRUN_DEVICE_ID"
`,
	"fail-d2.sh": `#!/bin/sh
if [ "$FLEETRUN_DEVICE_ID" = d2 ]; then
	echo "d2 is broken: disk full" >&2
	echo "second line" >&2
	exit 3
fi
echo "fine on $FLEETRUN_DEVICE_ID"
`,
	// gate.sh runs until the file named by its argument exists, so a test decides when the
	// task ends.
	"gate.sh": `#!/bin/sh
while [ ! -e "$1" ]; do sleep 0.05; done
echo released
`,
	"slow.sh": `#!/bin/sh
exec sleep 60
`,
}

// fleet is a running `fleetrun serve`.
type fleet struct {
	url     string
	scripts string
	logs    *syncBuffer
	client  *client.Client
}

// startServe runs fleetrun serve (serve.Start) on a free port with a fresh data directory and the test scripts,
// and its extra flags, and stops it when the test ends.
func startServe(t *testing.T, extra ...string) *fleet {
	t.Helper()
	f := &fleet{scripts: t.TempDir(), logs: &syncBuffer{}}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(f.scripts, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	url, done, err := serve.Start(ctx, append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--script-root", f.scripts,
		"--grace", "1s", "--log-level", "warn"}, extra...), f.logs)
	if err != nil {
		stop()
		t.Fatalf("fleetrun serve did not start: %v: %s", err, f.logs.String())
	}
	f.url = url
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("fleetrun serve did not stop within 20s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", f.logs.String())
		}
	})
	c, err := client.New(f.url)
	if err != nil {
		t.Fatal(err)
	}
	f.client = c
	return f
}

// run runs the command through Main, as the binary does, against endpoint.
func run(ctx context.Context, endpoint string, args ...string) result {
	var stdout, stderr syncBuffer
	env := map[string]string{"FLEETRUN_ENDPOINT": endpoint}
	code := Main(ctx, args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return result{code, stdout.String(), stderr.String()}
}

// submit submits a task without waiting and returns its id.
func (f *fleet) submit(t *testing.T, args ...string) string {
	t.Helper()
	r := run(t.Context(), f.url, append([]string{"submit"}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("submit %q exited %d: %s", args, r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// waitFor polls task id until cond holds, failing the test after a deadline.
func (f *fleet) waitFor(t *testing.T, id string, what string, cond func(*api.Task) bool) *api.Task {
	t.Helper()
	var task *api.Task
	clocktest.Eventually(t, 20*time.Second, func() error {
		var err error
		if task, err = f.client.Get(t.Context(), id); err == nil && cond(task) {
			return nil
		}
		return fmt.Errorf("task %s: %s did not happen (last: %+v, %v)", id, what, task, err)
	})
	return task
}

func running(t *api.Task) bool { return t.Progress.Devices.Running > 0 }

// async runs the command in the background; the result arrives on the channel.
func async(ctx context.Context, endpoint string, args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- run(ctx, endpoint, args...) }()
	return ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not finish within 30s")
		return result{}
	}
}

func TestE2ESubmitWaitSucceeds(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	r := run(t.Context(), f.url, "submit", "--devices", "d1,d2", "--devices", "d3", "--script", "ok.sh", "--wait")
	if r.code != ExitOK {
		t.Fatalf("submit --wait exited %d, want 0\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	id := strings.TrimSuffix(strings.Fields(lines[0])[2], ":")
	if want := "submitted task " + id + ": ok.sh on 3 devices"; lines[0] != want {
		t.Errorf("first line = %q, want %q", lines[0], want)
	}
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "task "+id+" completed in ") || !strings.HasSuffix(last, ": 3 devices, 3 succeeded") {
		t.Errorf("summary = %q, want the task completed with 3 succeeded", last)
	}
	checkProgressLines(t, id, lines[1:len(lines)-1], "completed 3/3 done (3 succeeded)")

	out := run(t.Context(), f.url, "output", id, "d2")
	if out.code != ExitOK || out.stdout != "hello from d2\n" {
		t.Errorf("output %s d2 = %d %q, want 0 and the script's stdout", id, out.code, out.stdout)
	}
}

// checkProgressLines checks the plain progress lines of a wait: each timestamped, about the
// task, different from the one before, and ending with final.
func checkProgressLines(t *testing.T, id string, lines []string, final string) {
	t.Helper()
	if len(lines) == 0 {
		t.Fatal("no progress lines")
	}
	prev := ""
	for _, line := range lines {
		stamp, rest, _ := strings.Cut(line, " ")
		if _, err := time.Parse(time.RFC3339, stamp); err != nil {
			t.Errorf("progress line %q does not start with a timestamp: %v", line, err)
		}
		if !strings.HasPrefix(rest, id+" ") || !strings.Contains(rest, " done") {
			t.Errorf("progress line %q is not about task %s", line, id)
		}
		if rest == prev {
			t.Errorf("progress line %q repeats the one before", line)
		}
		prev = rest
	}
	if want := id + " " + final; prev != want {
		t.Errorf("last progress line says %q, want %q", prev, want)
	}
}

func TestE2EFailedDeviceExits1AndIsNamed(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	r := run(t.Context(), f.url, "submit", "--devices", "d1,d2,d3", "--script", "fail-d2.sh", "--wait")
	if r.code != ExitTaskFailed {
		t.Fatalf("submit --wait exited %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, ": 3 devices, 2 succeeded, 1 failed\n") {
		t.Errorf("summary does not count 2 succeeded and 1 failed:\n%s", r.stdout)
	}
	_, failed, ok := strings.Cut(r.stdout, "devices that did not succeed:\n")
	if !ok {
		t.Fatalf("no failed-device list in:\n%s", r.stdout)
	}
	fields := strings.Fields(failed)
	if want := []string{"d2", "failed", "exit", "3", "d2", "is", "broken:", "disk", "full"}; strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Errorf("failed devices = %q, want d2 with exit 3 and the first line of its stderr", failed)
	}

	id := strings.TrimSuffix(strings.Fields(r.stdout)[2], ":")
	devs := run(t.Context(), f.url, "devices", id, "--status", "failed")
	if devs.code != ExitOK || !strings.Contains(devs.stdout, "d2") || strings.Contains(devs.stdout, "d1") {
		t.Errorf("devices --status failed = %d %q, want d2 only", devs.code, devs.stdout)
	}
	stderr := run(t.Context(), f.url, "output", id, "d2", "--stderr")
	if stderr.stdout != "d2 is broken: disk full\nsecond line\n" {
		t.Errorf("output --stderr = %q", stderr.stdout)
	}
}

func TestE2EJSONParsesAsTheAPITypes(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	r := run(t.Context(), f.url, "submit", "--devices", "d1,d2", "--script", "fail-d2.sh", "--arg", "a b", "--json", "--wait")
	if r.code != ExitTaskFailed {
		t.Fatalf("submit --json --wait exited %d, want 1: %s", r.code, r.stderr)
	}
	task := decodeStrict[api.Task](t, r.stdout)
	if task.ID == "" || task.Status != api.StatusCompleted || task.Result == nil || task.Progress.Devices.Failed != 1 ||
		strings.Join(task.Request.Args, "|") != "a b" {
		t.Errorf("task = %+v, want the completed task with one failed device and its args", task)
	}
	if strings.Contains(r.stdout, "submitted") {
		t.Errorf("--json stdout holds more than the JSON: %q", r.stdout)
	}
	if !strings.Contains(r.stderr, task.ID+" completed 2/2 done") {
		t.Errorf("--json progress lines did not go to stderr: %q", r.stderr)
	}

	status := run(t.Context(), f.url, "status", task.ID, "--json")
	if got := decodeStrict[api.Task](t, status.stdout); status.code != ExitOK || got.ID != task.ID || got.Version != task.Version {
		t.Errorf("status --json = %d %+v", status.code, got)
	}
	list := run(t.Context(), f.url, "ls", "--json", "--status", "completed")
	if got := decodeStrict[api.TaskList](t, list.stdout); list.code != ExitOK || len(got.Items) != 1 || got.Items[0].ID != task.ID {
		t.Errorf("ls --json = %d %+v", list.code, got)
	}
	devs := run(t.Context(), f.url, "devices", "--json", task.ID)
	if got := decodeStrict[api.DeviceList](t, devs.stdout); devs.code != ExitOK || len(got.Items) != 2 {
		t.Errorf("devices --json = %d %+v", devs.code, got)
	}
	submitted := run(t.Context(), f.url, "submit", "--devices", "x", "--script", "ok.sh", "--json")
	if got := decodeStrict[api.Task](t, submitted.stdout); submitted.code != ExitOK || got.ID == "" || got.ID == task.ID {
		t.Errorf("submit --json = %d %+v", submitted.code, got)
	}
}

func TestE2ECancelEndsTheTaskAndWaitExits3(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	id := f.submit(t, "--devices", "d1,d2", "--script", "slow.sh")
	waiting := async(t.Context(), f.url, "wait", id)
	f.waitFor(t, id, "devices running", running)

	r := run(t.Context(), f.url, "cancel", id)
	if r.code != ExitOK || r.stdout != fmt.Sprintf("task %s is cancelling\n", id) {
		t.Errorf("cancel = %d %q (stderr %q), want 0 and cancelling", r.code, r.stdout, r.stderr)
	}
	w := await(t, waiting)
	if w.code != ExitCancelled {
		t.Errorf("wait exited %d, want 3\nstdout: %s\nstderr: %s", w.code, w.stdout, w.stderr)
	}
	if !strings.Contains(w.stdout, "task "+id+" cancelled in ") || !strings.Contains(w.stdout, "2 cancelled") {
		t.Errorf("wait summary does not say the task and its devices were cancelled:\n%s", w.stdout)
	}
	if task, err := f.client.Get(t.Context(), id); err != nil || task.Status != api.StatusCancelled {
		t.Errorf("task after cancel = %+v, %v; want cancelled", task, err)
	}
	again := run(t.Context(), f.url, "cancel", id)
	if again.code != ExitOK || !strings.Contains(again.stdout, "cancelled") {
		t.Errorf("cancelling again = %d %q, want 0: cancel is idempotent", again.code, again.stdout)
	}
}

func TestE2ECancelOfAFinishedTaskExits2(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	r := run(t.Context(), f.url, "submit", "--devices", "d1", "--script", "ok.sh", "--wait")
	id := strings.TrimSuffix(strings.Fields(r.stdout)[2], ":")
	c := run(t.Context(), f.url, "cancel", id)
	if c.code != ExitUsage || !strings.Contains(c.stderr, "the task is completed") {
		t.Errorf("cancel of a completed task = %d %q, want 2 naming its status", c.code, c.stderr)
	}
}

func TestE2EBadRequestExits2WithTheProblem(t *testing.T) {
	t.Parallel()
	f := startServe(t)
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--devices", "d1,d1", "--script", "ok.sh"}, []string{"(422)", "/deviceIds/1: "}},
		{[]string{"--devices", "d1", "--script", "../outside.sh"}, []string{"(422)", "/scriptUrl: ", "outside the script root"}},
		{[]string{"--devices", "d1", "--script", "s3://bucket/x.sh"}, []string{"(422)", "/scriptUrl: "}},
		{[]string{"--devices", "bad id!", "--script", "ok.sh", "--wait"}, []string{"(422)", "/deviceIds/0: "}},
	}
	for _, tc := range cases {
		r := run(t.Context(), f.url, append([]string{"submit"}, tc.args...)...)
		if r.code != ExitUsage {
			t.Errorf("submit %q exited %d, want 2: %s", tc.args, r.code, r.stderr)
		}
		for _, want := range tc.want {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("submit %q stderr %q does not contain %q", tc.args, r.stderr, want)
			}
		}
		if r.stdout != "" {
			t.Errorf("submit %q printed %q on stdout", tc.args, r.stdout)
		}
	}
	missing := run(t.Context(), f.url, "status", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	if missing.code != ExitUsage || !strings.Contains(missing.stderr, "(404)") {
		t.Errorf("status of an unknown task = %d %q, want 2 and 404", missing.code, missing.stderr)
	}
	list := f.client.List(t.Context(), client.ListOptions{})
	for task, err := range list {
		t.Errorf("a bad request stored task %s (%v)", task.ID, err)
	}
}

// decodeStrict decodes s as exactly one T, refusing unknown fields.
func decodeStrict[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := jsonDecoder(s)
	if err := dec.Decode(&v); err != nil {
		t.Errorf("output does not parse as %T: %v\n%s", v, err, s)
	}
	if dec.More() {
		t.Errorf("output holds more than one %T:\n%s", v, s)
	}
	return v
}

func jsonDecoder(s string) *json.Decoder {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec
}
