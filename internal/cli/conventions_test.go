package cli

// The habits of a Go command-line tool: global flags anywhere, --version, completion.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/api"
)

func TestGlobalFlagsBeforeOrAfterTheCommand(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.MediaJSON)
		json.NewEncoder(w).Encode(api.TaskList{Items: []api.Task{{ID: "t1", Status: api.StatusRunning,
			Request: api.TaskRequest{ScriptURL: "hello.sh"}}}})
	}))
	defer srv.Close()
	// FLEETRUN_ENDPOINT names a server that is not there: only the flag reaches srv.
	unreachable := "http://127.0.0.1:1"
	before := runApp(t.Context(), unreachable, nil, "--endpoint", srv.URL, "ls")
	after := runApp(t.Context(), unreachable, nil, "ls", "--endpoint", srv.URL)
	if before.code != ExitOK || after.code != ExitOK || before.stdout != after.stdout || !strings.Contains(before.stdout, "t1") {
		t.Errorf("fleetrun --endpoint URL ls = %d %q %q\nfleetrun ls --endpoint URL = %d %q %q\nwant both 0 and the same list",
			before.code, before.stdout, before.stderr, after.code, after.stdout, after.stderr)
	}
	jsonBefore := runApp(t.Context(), srv.URL, nil, "--json", "ls")
	jsonAfter := runApp(t.Context(), srv.URL, nil, "ls", "--json")
	if jsonBefore.code != ExitOK || jsonBefore.stdout != jsonAfter.stdout || !strings.HasPrefix(jsonBefore.stdout, "{") {
		t.Errorf("fleetrun --json ls = %q, fleetrun ls --json = %q; want the same JSON", jsonBefore.stdout, jsonAfter.stdout)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := runApp(t.Context(), "", nil, args...)
		if r.code != ExitOK || !strings.HasPrefix(r.stdout, "fleetrun ") || !strings.Contains(r.stdout, "commit ") ||
			!strings.Contains(r.stdout, runtime.Version()) {
			t.Errorf("fleetrun %s = %d %q %q; want 0 and the version, commit and Go version", args[0], r.code, r.stdout, r.stderr)
		}
	}
}

func TestVersionIsStamped(t *testing.T) {
	// Not parallel: it sets the variables -ldflags -X sets.
	version, commit = "v1.2.3", "0123456789abcdef0123"
	t.Cleanup(func() { version, commit = "", "" })
	if got, want := versionString(), "fleetrun v1.2.3 (commit 0123456789ab, "+runtime.Version(); !strings.HasPrefix(got, want) {
		t.Errorf("versionString() = %q, want it to start %q", got, want)
	}
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runApp(t.Context(), "", nil, "completion", shell)
		if r.code != ExitOK || !strings.Contains(r.stdout, "fleetrun") {
			t.Errorf("fleetrun completion %s = %d, %d bytes, %q", shell, r.code, len(r.stdout), r.stderr)
			continue
		}
		if shell != "bash" {
			continue
		}
		script := filepath.Join(t.TempDir(), "fleetrun.bash")
		if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("bash -n rejects the completion script: %v\n%s", err, out)
		}
	}
}

func TestProgressFallsBackToLinesWithoutAWidth(t *testing.T) {
	t.Parallel()
	for _, width := range []int{0, 120} {
		a, _, _ := testApp("", nil)
		a.isTerminal = func(any) bool { return true }
		a.termWidth = func(any) int { return width }
		_, isLines := a.newProgress(false).(*lineProgress)
		if isLines != (width == 0) {
			t.Errorf("a terminal %d columns wide: lines %v, want lines only when the width is unknown", width, isLines)
		}
	}
}

func TestPlural(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{0: "0 devices", 1: "1 device", 2: "2 devices"} {
		if got := plural(n, "device"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}
