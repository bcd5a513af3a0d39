//go:build !linux

package cli

import (
	"context"
	"fmt"
	"runtime"
)

// serve explains that `fleetrun serve` needs Linux: this build has the client commands only.
func (a *app) serve(context.Context, []string) int {
	fmt.Fprintf(a.stderr, "fleetrun serve: the local server runs on Linux; this %s build has the client commands only.\n"+
		"Run the server on a Linux machine (or deploy to AWS) and point --endpoint at it.\n", runtime.GOOS)
	return ExitUsage
}
