// Command fleetbench measures fleetrun's HTTP API over loopback: submits per second and status
// GETs per second with p50/p99 latency, beside a bare net/http server answering with bodies of
// the same size — the ceiling on this machine. Without --endpoint it starts a fresh local server
// on a temporary data directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/fleetrun/fleetrun/internal/loadgen"
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

func realMain(ctx context.Context) error {
	var o loadgen.Options
	endpoint := flag.String("endpoint", "", "a running server to measure (default: start a fresh local one)")
	flag.StringVar(&o.Token, "token", os.Getenv("FLEETRUN_TOKEN"), "bearer token for --endpoint")
	flag.IntVar(&o.Workers, "workers", 8, "concurrent requests")
	flag.DurationVar(&o.Duration, "duration", 5*time.Second, "how long each phase runs")
	flag.StringVar(&o.Script, "script", "noop.sh", "scriptUrl of the submitted one-device tasks")
	flag.Parse()

	if *endpoint == "" {
		dir, err := os.MkdirTemp("", "fleetbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		scripts := filepath.Join(dir, "scripts")
		if err := os.MkdirAll(scripts, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(scripts, "noop.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			return err
		}
		srvCtx, stopServer := context.WithCancel(ctx)
		addr, done, err := serve.Start(srvCtx, []string{"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
			"--script-root", scripts, "--log-level", "error"}, os.Stderr)
		if err != nil {
			stopServer()
			return err
		}
		defer func() { stopServer(); <-done }()
		*endpoint = addr
	}

	fmt.Printf("fleetbench: %d workers, %s per phase, against %s\n\n", o.Workers, o.Duration, *endpoint)
	submit, status, body, err := loadgen.Fleetrun(ctx, *endpoint, o)
	if err != nil {
		return err
	}
	bareSubmit, bareStatus := loadgen.Baseline(ctx, body, o)
	fmt.Println(submit)
	fmt.Println(bareSubmit)
	fmt.Println(status)
	fmt.Println(bareStatus)
	fmt.Printf("\nstatus body: %d bytes; each accepted submit is fsynced to the embedded store before its 202.\n", len(body))
	return nil
}
