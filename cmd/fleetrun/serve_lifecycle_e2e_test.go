package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

func TestSIGTERMStopsScriptsAndTheRestartSaysSo(t *testing.T) {
	t.Parallel()
	data, scripts := t.TempDir(), scriptRoot(t)
	s := startServer(t, data, scripts)
	task := s.submit(api.SubmitRequest{DeviceIDs: []string{"g1"}, ScriptURL: "long.sh"})
	s.waitFor(task.ID, "running", func(t api.Task) bool { return t.Progress.Devices.Running == 1 })
	pids := readPids(t, s.pids, "g1.pid", "g1.child")

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the server did not stop on SIGTERM:\n%s", s.logs)
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	// No child outlives the server: the script and the sleep it started are gone.
	for _, pid := range pids {
		waitGone(t, pid)
	}

	s2 := startServer(t, data, scripts)
	done := s2.waitFor(task.ID, "finished", func(t api.Task) bool { return api.Terminal(t.Status) })
	if done.Status != api.StatusCompleted || done.Progress.Devices.Failed != 1 {
		t.Fatalf("after restart: %s %+v, want completed with the interrupted device failed", done.Status, done.Progress.Devices)
	}
}

func TestOwnersAreIsolatedByToken(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t), "--token", "alice=alice-secret", "--token", "bob=bob-secret")
	r := s.do(http.MethodPost, "/tasks", api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "ok.sh"},
		"Authorization", "Bearer alice-secret")
	if r.status != http.StatusAccepted {
		t.Fatalf("alice's submit: %d %s", r.status, r.body)
	}
	var task api.Task
	r.decode(t, &task)

	if r := s.do(http.MethodGet, "/tasks/"+task.ID, nil, "Authorization", "Bearer alice-secret"); r.status != http.StatusOK {
		t.Errorf("alice reads her task: %d", r.status)
	}
	if r := s.do(http.MethodGet, "/tasks/"+task.ID, nil, "Authorization", "Bearer bob-secret"); r.status != http.StatusNotFound {
		t.Errorf("bob reads alice's task: %d, want 404", r.status)
	}
	if r := s.do(http.MethodDelete, "/tasks/"+task.ID, nil, "Authorization", "Bearer bob-secret"); r.status != http.StatusNotFound {
		t.Errorf("bob cancels alice's task: %d, want 404", r.status)
	}
	r = s.do(http.MethodGet, "/tasks", nil, "Authorization", "Bearer bob-secret")
	var list api.TaskList
	r.decode(t, &list)
	if len(list.Items) != 0 {
		t.Errorf("bob lists %d tasks, want none", len(list.Items))
	}
	if r := s.do(http.MethodGet, "/tasks/"+task.ID, nil); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d, want 401 with WWW-Authenticate", r.status)
	}
	if r := s.do(http.MethodGet, "/tasks/"+task.ID, nil, "Authorization", "Bearer wrong-secret"); r.status != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", r.status)
	}
}

func TestServeRefusesAPublicAddressWithoutAToken(t *testing.T) {
	t.Parallel()
	// If the refusal were missing the server would run: the context bounds the test.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--addr", "0.0.0.0:0", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), execEnv+"=1", "FLEETRUN_TOKEN=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without a token") {
		t.Fatalf("serve on 0.0.0.0 without a token: err %v, output %q; want a refusal", err, out)
	}
}
