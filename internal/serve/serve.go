// Package serve is `fleetrun serve`: the single-machine home of fleetrun, with the embedded
// store, an in-process queue and the local runner behind the same HTTP API as on AWS.
package serve

import (
	"context"
	"fmt"
	"io"
)

// Main runs `fleetrun serve` with args (the words after "serve") until ctx ends, and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "fleetrun serve: not wired yet")
	return 1
}
