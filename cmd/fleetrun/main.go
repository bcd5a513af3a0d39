// Command fleetrun is fleetrun's local server (`fleetrun serve`) and command-line client.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleetrun/fleetrun/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal ends ctx: serve shuts down gracefully, a wait offers to cancel its task.
	// Restoring the default handling then lets a second Ctrl-C end the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
