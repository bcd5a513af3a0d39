// Command fleetbench measures fleetrun on this machine against the ceiling of each thing it
// does, side by side in one run, and prints each row as a ratio:
//
//   - status GET /tasks/{id}, 32 clients: against a bare net/http server answering the same
//     bytes;
//   - durable POST /tasks, 64 clients, with the submitted tasks running: against a bare
//     net/http server answering a 202; and the status GETs' latency during that burst;
//   - one task of 10,000 devices running a no-op script, 50 at a time: against
//     `seq 10000 | xargs -P 50 -n 1 script`;
//   - Lambda init, from the start of StatusFunction's bootstrap to its first GET /next of the
//     Runtime API: against a minimal aws-lambda-go function the benchmark builds too;
//   - StatusFunction's arm64 bootstrap: against 10 MB.
//
// The server is a fresh `fleetrun serve` in this process, on a temporary data directory,
// logging at its default level to a file. It prints figures and asserts nothing. With --cpuprofile DIR it writes a CPU profile of each
// server phase there (go tool pprof DIR/status.pprof).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/internal/serve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := realMain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
}

// options are the benchmark's settings.
type options struct {
	duration    time.Duration
	getClients  int
	postClients int
	devices     int
	concurrency int
	starts      int
	profiles    string
	only        string
	logLevel    string
	serveFlags  string
}

func realMain(ctx context.Context) error {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each HTTP phase runs")
	flag.IntVar(&o.getClients, "get-clients", 32, "concurrent status GETs")
	flag.IntVar(&o.postClients, "post-clients", 64, "concurrent submits")
	flag.IntVar(&o.devices, "devices", 10000, "devices of the no-op task")
	flag.IntVar(&o.concurrency, "concurrency", 50, "maxConcurrency of the no-op task, and xargs -P")
	flag.IntVar(&o.starts, "starts", 15, "cold starts of each Lambda bootstrap")
	flag.StringVar(&o.profiles, "cpuprofile", "", "write a CPU profile of each phase to this directory")
	flag.StringVar(&o.only, "only", "", "comma-separated rows to run: get, post, devices, lambda (default: all)")
	flag.StringVar(&o.logLevel, "log-level", "info", "the server's log level; its log goes to a file, as a server's would")
	flag.StringVar(&o.serveFlags, "serve-flags", "", "more flags for the server, space-separated (such as --cgroups off)")
	flag.Parse()

	dir, err := os.MkdirTemp("", "fleetbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script, err := noopScript(dir)
	if err != nil {
		return err
	}
	if o.profiles != "" {
		if err := os.MkdirAll(o.profiles, 0o755); err != nil {
			return err
		}
	}
	logs, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	defer logs.Close()
	srvCtx, stopServer := context.WithCancel(ctx)
	endpoint, done, err := serve.Start(srvCtx, append([]string{"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--script-root", filepath.Dir(script), "--log-level", o.logLevel}, strings.Fields(o.serveFlags)...), logs)
	if err != nil {
		stopServer()
		return err
	}
	defer func() { stopServer(); <-done }()

	fmt.Printf("fleetbench: %s/%s, %d CPUs, load average %s at the start\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadAverage())
	b := &bench{o: o, endpoint: endpoint, script: script, dir: dir}
	run := func(name string, f func(context.Context) error) error {
		if o.only != "" && !strings.Contains(","+o.only+",", ","+name+",") {
			return nil
		}
		return f(ctx)
	}
	for _, row := range []struct {
		name string
		f    func(context.Context) error
	}{{"post", b.submits}, {"get", b.statuses}, {"devices", b.fleet}, {"lambda", b.lambda}} {
		if err := run(row.name, row.f); err != nil {
			return fmt.Errorf("%s: %w", row.name, err)
		}
	}
	fmt.Println()
	b.print()
	fmt.Printf("\nload average %s at the end\n", loadAverage())
	return nil
}

// noopScript writes the script every device runs: a shell that exits at once.
func noopScript(dir string) (string, error) {
	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(scripts, "noop.sh")
	return path, os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755)
}

// loadAverage is the machine's 1-, 5- and 15-minute load average, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
