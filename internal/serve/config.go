package serve

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Config is `fleetrun serve`'s configuration, from flags and the environment.
type Config struct {
	Addr       string
	DataDir    string
	ScriptRoot string
	// Tokens maps a bearer token to the owner it authenticates. Empty means no authentication:
	// every caller is the owner "local", which is allowed only on a loopback address.
	Tokens    map[string]string
	Retention time.Duration
	Grace     time.Duration
	LogLevel  string
	// LogFormat is "text" (the default, for a person at a terminal) or "json" (one object a
	// line, with the same keys as on Lambda, for a log collector).
	LogFormat string
	// MetricsAddr, when set, serves GET /metrics on this loopback address without a token,
	// instead of on Addr behind the API's tokens.
	MetricsAddr string
	// Now is the clock of the store, the runner, the engine and the sweeper; time.Now when
	// nil. Flags do not set it: tests do.
	Now func() time.Time
}

// tokenFlags collects repeated --token values.
type tokenFlags []string

func (t *tokenFlags) String() string     { return strings.Join(*t, ",") }
func (t *tokenFlags) Set(v string) error { *t = append(*t, v); return nil }

// parseConfig reads flags, with FLEETRUN_TOKEN (comma-separated, same forms as --token) as the
// default for --token.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var cfg Config
	var tokens tokenFlags
	fs := flag.NewFlagSet("fleetrun serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to listen on (a non-loopback address needs --token)")
	fs.StringVar(&cfg.DataDir, "data", "./.fleetrun", "data directory: the task store and device output")
	fs.StringVar(&cfg.ScriptRoot, "script-root", "./examples/scripts", "directory that scriptUrl paths are resolved in")
	fs.Var(&tokens, "token", "bearer token, `SECRET` or OWNER=SECRET: the secret at least 8 characters, the owner\nnot empty; repeat for several owners, each of whom sees only its own tasks (default\n$FLEETRUN_TOKEN, comma-separated). Without one every caller is the owner \"local\"")
	fs.DurationVar(&cfg.Retention, "retention", 7*24*time.Hour, "how long finished tasks are kept")
	fs.DurationVar(&cfg.Grace, "grace", 5*time.Second, "time between SIGTERM and SIGKILL when stopping a script")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "text, or json for one JSON object a line")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve GET /metrics on this loopback `address` without a token\n(default: on --addr, behind the tokens)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fleetrun serve [flags]\n\nRuns the fleetrun API with the embedded store and the local runner.\n\nFlags:")
		printFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(tokens) == 0 && getenv("FLEETRUN_TOKEN") != "" {
		tokens = strings.Split(getenv("FLEETRUN_TOKEN"), ",")
	}
	cfg.Tokens = make(map[string]string)
	for _, tok := range tokens {
		owner, secret, ok := strings.Cut(strings.TrimSpace(tok), "=")
		if !ok {
			owner, secret = "default", owner
		}
		if owner == "" || len(secret) < 8 {
			return cfg, fmt.Errorf("--token %q: want SECRET or OWNER=SECRET, with a secret of at least 8 characters", tok)
		}
		if _, dup := cfg.Tokens[secret]; dup {
			return cfg, errors.New("--token: the same secret is given twice")
		}
		cfg.Tokens[secret] = owner
	}
	if len(cfg.Tokens) == 0 && !loopback(cfg.Addr) {
		return cfg, fmt.Errorf("refusing to listen on %s without a token: pass --token or FLEETRUN_TOKEN, or listen on 127.0.0.1", cfg.Addr)
	}
	if cfg.Retention <= 0 {
		return cfg, errors.New("--retention must be positive")
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("--log-format %q: want text or json", cfg.LogFormat)
	}
	if cfg.MetricsAddr != "" && !loopback(cfg.MetricsAddr) {
		return cfg, fmt.Errorf("--metrics-addr %s: want a loopback address, since it serves without a token", cfg.MetricsAddr)
	}
	return cfg, nil
}

// loopback reports whether addr (host:port) listens only on a loopback interface. An empty
// host means every interface, which is not loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printFlags prints fs's flags as --name VALUE, the form the documentation uses (the flag
// package accepts both -name and --name), each description indented below its flag.
func printFlags(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		usage = strings.ReplaceAll(usage, "\n", "\n        ")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(fs.Output(), "%s\n        %s\n", line, usage)
	})
}
