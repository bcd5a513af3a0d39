package client_test

import (
	"context"
	"fmt"
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
	var logs strings.Builder
	url, done, err := serve.Start(ctx, []string{"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--script-root", scripts, "--grace", "1s", "--log-level", "error"}, &logs)
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: %s", err, logs.String())
	}
	endpoint = url
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
		}
		os.RemoveAll(dir)
	}, nil
}
