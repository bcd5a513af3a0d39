package localrun

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestLongOutputIsTruncatedInlineAndKeptOnDisk(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	// 30,000 two-byte characters: a cut by bytes would keep only half as many as allowed.
	name := b.script(t, "loud.sh", `yes é | head -n 30000 | tr -d '\n'; printf short >&2`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceSucceeded)
	if n := utf8.RuneCountInString(d.Stdout); n != task.StdoutInlineLimit || !d.StdoutTruncated {
		t.Errorf("inline stdout has %d characters (truncated %v), want %d and truncated", n, d.StdoutTruncated, task.StdoutInlineLimit)
	}
	if d.Stdout != strings.Repeat("é", task.StdoutInlineLimit) {
		t.Error("inline stdout is not the start of the output")
	}
	if d.Stderr != "short" || d.StderrTruncated {
		t.Errorf("stderr = %q (truncated %v)", d.Stderr, d.StderrTruncated)
	}
	f, err := b.runner.OpenOutput("T1", "d1", StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	full, err := io.ReadAll(f)
	if err != nil || string(full) != strings.Repeat("é", 30000) {
		t.Errorf("full stdout has %d characters, %v; want 30000", utf8.RuneCount(full), err)
	}
}

func TestOpenOutputErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore(), nil)
	tests := []struct {
		taskID, deviceID, stream string
		want                     task.Code
	}{
		{"T1", "d1", StreamStdout, task.CodeNotFound},
		{"T1", "d1", "stdin", task.CodeInvalid},
		{"..", "d1", StreamStdout, task.CodeNotFound},
		{"T1", "..", StreamStderr, task.CodeNotFound},
		{"T1", "a/b", StreamStderr, task.CodeNotFound},
	}
	for _, tc := range tests {
		if _, err := b.runner.OpenOutput(tc.taskID, tc.deviceID, tc.stream); task.ErrorCode(err) != tc.want {
			t.Errorf("OpenOutput(%q, %q, %q) = %v, want %s", tc.taskID, tc.deviceID, tc.stream, err, tc.want)
		}
	}
}

func TestInline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content string
		limit         int
		want          string
		truncated     bool
	}{
		{"empty", "", 5, "", false},
		{"short", "abc", 5, "abc", false},
		{"exact", "abcde", 5, "abcde", false},
		{"one over", "abcdef", 5, "abcde", true},
		{"multibyte", "ééééé", 3, "ééé", true},
		{"invalid bytes", "a\xffb", 5, "a\uFFFDb", false},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, truncated, err := inlineFile(path, tc.limit)
		if err != nil || got != tc.want || truncated != tc.truncated {
			t.Errorf("%s: inline = %q, %v, %v; want %q, %v", tc.name, got, truncated, err, tc.want, tc.truncated)
		}
	}
}

// TestASilentScriptLeavesNoOutputFile: a stream's file is made at its first byte, so a script
// that writes nothing costs no file, and its output still reads as empty.
func TestASilentScriptLeavesNoOutputFile(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	name := b.script(t, "quiet.sh", `printf only-stderr >&2`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	d := waitStatus(t, b.store, "d1", task.DeviceSucceeded)
	if d.Stdout != "" || d.Stderr != "only-stderr" {
		t.Errorf("inline output %q / %q", d.Stdout, d.Stderr)
	}
	if _, err := os.Stat(filepath.Join(b.runner.outputDir("T1", "d1"), StreamStdout)); !os.IsNotExist(err) {
		t.Errorf("the silent stdout has a file: %v", err)
	}
	for stream, want := range map[string]string{StreamStdout: "", StreamStderr: "only-stderr"} {
		f, err := b.runner.OpenOutput("T1", "d1", stream)
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(got) != want {
			t.Errorf("%s reads %q, %v; want %q", stream, got, err, want)
		}
	}
}

// TestAFollowSeesOutputWrittenAfterItOpened: a stream with no file yet is followed all the
// same, and reads what the script writes later.
func TestAFollowSeesOutputWrittenAfterItOpened(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeStore("d1"), nil)
	name := b.script(t, "late.sh", `while [ ! -e go ]; do sleep 0.05; done; printf late`)
	if err := b.runner.Start(context.Background(), newTask("T1", name, time.Now(), "d1")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.store, "d1", task.DeviceRunning)
	f, err := b.runner.FollowOutput(context.Background(), "T1", "d1", StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := f.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("before any output: %d bytes, %v; want EOF", n, err)
	}
	if err := os.WriteFile(filepath.Join(b.runner.workDir("T1", "d1"), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.store, "d1", task.DeviceSucceeded)
	got, err := io.ReadAll(f)
	if err != nil || string(got) != "late" {
		t.Errorf("the follow read %q, %v; want what the script wrote later", got, err)
	}
}
