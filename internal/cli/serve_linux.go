package cli

import (
	"context"

	"github.com/fleetrun/fleetrun/internal/serve"
)

// serve runs `fleetrun serve`. The local runner manages process groups and reaps children
// with Linux system calls, so the server is built on Linux only; the client commands build
// everywhere.
func (a *app) serve(ctx context.Context, args []string) int {
	return serve.Main(ctx, args, a.stdout, a.stderr, a.env)
}
