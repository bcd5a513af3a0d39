package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetrun/fleetrun/internal/dashboard"
)

// defaultUIAddr is where `fleetrun ui` listens unless told otherwise.
const defaultUIAddr = "127.0.0.1:8081"

func (a *app) uiCommand() *cobra.Command {
	var addr string
	cmd := a.command("ui", "Serve the dashboard of an API on this machine, signing its calls",
		`Serves the web dashboard on a loopback address and relays its API calls to --endpoint with
this command's credentials: SigV4 from the standard AWS credential chain for an API Gateway
endpoint, or --token for a local server. Event streams are relayed as they come. The browser
never holds the credentials, and the dashboard is answered on a loopback address only.`,
		exactArgs(0), func(ctx context.Context, _ []string) int { return a.ui(ctx, addr) })
	cmd.Flags().StringVar(&addr, "addr", defaultUIAddr, "loopback `address` to serve the dashboard on")
	return cmd
}

// ui runs `fleetrun ui` until ctx ends.
func (a *app) ui(ctx context.Context, addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !dashboard.LoopbackHost(host) {
		return a.usageError("ui", fmt.Errorf("--addr %q is not a loopback address: the dashboard relays calls with your credentials, so it is served on this machine alone", addr))
	}
	cl, err := a.connect(ctx, &a.common)
	if err != nil {
		return a.usageError("ui", err)
	}
	endpoint, err := url.Parse(cl.Endpoint())
	if err != nil {
		return a.usageError("ui", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "fleetrun ui: %v\n", err)
		return ExitUnavailable
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := &http.Server{
		Handler:           dashboard.Proxy(dashboard.ProxyConfig{Endpoint: endpoint, Relay: cl, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(a.stdout, "dashboard of %s at http://%s%s%s\n", endpoint.Redacted(), ln.Addr(), endpoint.EscapedPath(), dashboard.Path)
	select {
	case err = <-served:
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if srv.Shutdown(shutdown) != nil {
			srv.Close() // event streams still open
		}
		err = <-served
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(a.stderr, "fleetrun ui: %v\n", err)
		return ExitUnavailable
	}
	return ExitOK
}
