package client_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/serve"
)

// exampleScripts are the scripts of the examples' server.
var exampleScripts = map[string]string{
	"hello.sh": `#!/bin/sh
echo "hello from $FLEETRUN_DEVICE_ID${1:+ ($1)}"
`,
	"flaky.sh": `#!/bin/sh
if [ "$FLEETRUN_DEVICE_ID" = web-2 ]; then
	echo "web-2: disk full" >&2
	exit 2
fi
echo ok
`,
	"slow.sh": `#!/bin/sh
exec sleep 60
`,
}

// TestMain runs the examples against a real `fleetrun serve`, started in this process on a
// free loopback port.
func TestMain(m *testing.M) {
	stop, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start fleetrun serve:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func startServer() (stop func(), err error) {
	dir, err := os.MkdirTemp("", "fleetrun-client-examples-")
	if err != nil {
		return nil, err
	}
	scripts := filepath.Join(dir, "scripts")
	if err := os.Mkdir(scripts, 0o755); err != nil {
		return nil, err
	}
	for name, body := range exampleScripts {
		if err := os.WriteFile(filepath.Join(scripts, name), []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var logs strings.Builder
	exited := make(chan int, 1)
	go func() {
		code := serve.Main(ctx, []string{"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
			"--script-root", scripts, "--grace", "1s", "--log-level", "error"}, pw, &logs)
		pw.Close()
		exited <- code
	}()
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				listening <- strings.TrimSpace(addr)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	stop = func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
		}
		os.RemoveAll(dir)
	}
	select {
	case endpoint = <-listening:
		return stop, nil
	case code := <-exited:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("exited %d before listening: %s", code, logs.String())
	case <-time.After(20 * time.Second):
		stop()
		return nil, fmt.Errorf("not listening after 20s")
	}
}
