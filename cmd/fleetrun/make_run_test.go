package main

import (
	"bufio"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMakeRunExitsZeroOnCtrlC runs `make run` on a terminal (a pty that script(1) provides),
// presses Ctrl-C once the server listens, and expects the server to stop cleanly and make to
// exit 0 without an error line.
func TestMakeRunExitsZeroOnCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs make; skipped under -short")
	}
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is not installed: no pty to press Ctrl-C on")
	}
	dir := t.TempDir()
	makeRun := "make -s run ADDR=127.0.0.1:0 DATA=" + filepath.Join(dir, "data") + " BIN=" + filepath.Join(dir, "fleetrun")
	cmd := exec.Command(script, "-qefc", makeRun, "/dev/null")
	cmd.Dir = filepath.Join("..", "..")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var out strings.Builder
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	deadline := time.After(2 * time.Minute)
	for listening := false; !listening; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended before the server listened:\n%s", out.String())
			}
			out.WriteString(line + "\n")
			listening = strings.Contains(line, "fleetrun serving")
		case <-deadline:
			t.Fatalf("the server did not start within 2 minutes:\n%s", out.String())
		}
	}
	if _, err := io.WriteString(stdin, "\x03"); err != nil { // Ctrl-C, as the terminal sends it
		t.Fatal(err)
	}
	go func() {
		for line := range lines {
			out.WriteString(line + "\n")
		}
		exited <- cmd.Wait()
	}()
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("make run did not end within 30s of Ctrl-C:\n%s", out.String())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Errorf("make run after Ctrl-C: %v, want exit 0\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "fleetrun stopping") || strings.Contains(out.String(), "make: ***") {
		t.Errorf("make run's output after Ctrl-C:\n%s\nwant a clean stop and no make error", out.String())
	}
}
