// Command fleetrun is fleetrun's local server (`fleetrun serve`) and command-line client.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleetrun/fleetrun/internal/serve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(serve.Main(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(2)
}
