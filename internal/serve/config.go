package serve

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fleetrun/fleetrun/internal/localrun"
	"github.com/fleetrun/fleetrun/internal/webhook"
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

	// PublicURL is the base of Location headers and links; empty means the address the
	// request arrived at (see httpapi.BaseURL).
	PublicURL string
	// TrustProxy takes the base of links from X-Forwarded-Proto and X-Forwarded-Host (or
	// Host), which only a reverse proxy in front of the server may be trusted to set.
	TrustProxy bool
	// MaxProcs caps the scripts running at once across every task (localrun.Config.MaxProcs).
	MaxProcs int
	// MaxPending bounds the devices waiting to run across every task; past it a submit is
	// refused with 503 and Retry-After.
	MaxPending int
	// MaxConns caps the open connections; a connection past it waits to be accepted.
	MaxConns int
	// IdleTimeout closes a keep-alive connection that sends no request for that long.
	IdleTimeout time.Duration
	// BodyTimeout is how long a request body may take to arrive; a slower one gets 408.
	BodyTimeout time.Duration
	// MaxStreams and MaxStreamsPerOwner cap the event streams and long-polls open at once, in
	// all and for one owner; past them such a request gets 503 and Retry-After.
	MaxStreams, MaxStreamsPerOwner int
	// Cgroups is "auto" (a cgroup per script where the server may create cgroups) or "off".
	Cgroups string
	// Inventory is a YAML file of devices and their tags (inventoryfile), which submits may
	// target by tag and GET /devices lists; SIGHUP reads it again. Empty means none.
	Inventory string
	// WebhookSecret signs webhook requests; the zero Secret turns webhooks off (a submit with
	// notify is refused).
	WebhookSecret webhook.Secret
	// AllowHTTPWebhooks lets webhooks go to the loopback interface, over http too, for
	// receivers on the same machine.
	AllowHTTPWebhooks bool
	// Subreaper makes the server a child subreaper (localrun.Config.Subreaper). Main sets it;
	// a server started in a test's process (Start) does not, since the test's other children
	// are not the runner's.
	Subreaper bool
	// Now is the clock of the store, the runner, the engine and the sweeper; time.Now when
	// nil. Flags do not set it: tests do.
	Now func() time.Time
}

// Defaults of the limits that are not derived from the machine.
const (
	DefaultMaxPending         = 50000
	DefaultIdleTimeout        = 60 * time.Second
	DefaultBodyTimeout        = 30 * time.Second
	DefaultMaxStreams         = 1000
	DefaultMaxStreamsPerOwner = 100
)

// DefaultMaxConns is the default cap on open connections: a quarter of the open-file limit
// (which Go raises to its hard limit at start), between 64 and 10,000, so that connections can
// never take the descriptors that scripts and the store need.
func DefaultMaxConns() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return 10000
	}
	return int(min(max(lim.Cur/4, 64), 10000))
}

// tokenFlags collects repeated --token values.
type tokenFlags []string

func (t *tokenFlags) String() string     { return strings.Join(*t, ",") }
func (t *tokenFlags) Set(v string) error { *t = append(*t, v); return nil }

// ownerRule is what an owner named in --token may look like; it has no "=", so the first "="
// of a --token value always ends the owner.
var ownerRule = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// minSecretLength is the shortest secret a token may have.
const minSecretLength = 8

// parseConfig reads flags, with FLEETRUN_TOKEN as the default for --token: a token given in
// the environment is one whole secret (the one the client sends) for the owner "default".
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var cfg Config
	var tokens tokenFlags
	var secret string
	fs := flag.NewFlagSet("fleetrun serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to listen on (a non-loopback address needs a token)")
	fs.StringVar(&cfg.DataDir, "data", "./.fleetrun", "data directory: the task store and device output")
	fs.StringVar(&cfg.ScriptRoot, "script-root", "./examples/scripts", "directory that scriptUrl paths are resolved in")
	fs.Var(&tokens, "token", "`OWNER=SECRET`: callers sending the bearer SECRET are OWNER (the first \"=\" ends OWNER);\nOWNER is 1 to 64 letters, digits, \".\", \"_\", \"@\" or \"-\", and SECRET at least 8 characters.\nRepeat for several owners, each of whom sees only its own tasks (default: the secret in\n$FLEETRUN_TOKEN, for owner \"default\"). Without a token every caller is the owner \"local\"")
	fs.DurationVar(&cfg.Retention, "retention", 7*24*time.Hour, "how long finished tasks are kept")
	fs.DurationVar(&cfg.Grace, "grace", 5*time.Second, "time between SIGTERM and SIGKILL when stopping a script")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "base URL of Location headers and links, such as https://fleet.example.com (default: the address a request arrived at)")
	fs.BoolVar(&cfg.TrustProxy, "trust-proxy", false, "take the base URL of links from X-Forwarded-Proto and X-Forwarded-Host, as set by a reverse proxy in front")
	fs.IntVar(&cfg.MaxProcs, "max-procs", localrun.DefaultMaxProcs(), "scripts running at once across all tasks (default: 128 per CPU, within the open-file and process limits)")
	fs.IntVar(&cfg.MaxPending, "max-pending", DefaultMaxPending, "devices waiting to run across all tasks before a submit gets 503")
	fs.IntVar(&cfg.MaxConns, "max-conns", DefaultMaxConns(), "open connections at once (default: a quarter of the open-file limit, at most 10000)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "close a keep-alive connection idle for this long")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", DefaultBodyTimeout, "time a request body may take to arrive before 408")
	fs.IntVar(&cfg.MaxStreams, "max-streams", DefaultMaxStreams, "event streams and long-polls open at once")
	fs.IntVar(&cfg.MaxStreamsPerOwner, "max-streams-per-owner", DefaultMaxStreamsPerOwner, "event streams and long-polls open at once for one owner")
	fs.StringVar(&cfg.Cgroups, "cgroups", "auto", "auto: run each script in a cgroup of its own where the server may create cgroups; off: never")
	fs.StringVar(&cfg.Inventory, "inventory", "", "`FILE` of devices and their tags (YAML) that submits may target by tag; SIGHUP reloads it")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "text, or json for one JSON object a line")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve GET /metrics on this loopback `address` without a token\n(default: on --addr, behind the tokens)")
	fs.StringVar(&secret, "webhook-secret", "", "`whsec_…` secret that signs webhooks (Standard Webhooks); without it, tasks cannot ask for webhooks (default: $FLEETRUN_WEBHOOK_SECRET)")
	fs.BoolVar(&cfg.AllowHTTPWebhooks, "allow-http-webhooks", false, "let webhooks go to the loopback interface, over http too, for receivers on this machine")
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
	var err error
	if cfg.Tokens, err = parseTokens(tokens, getenv("FLEETRUN_TOKEN")); err != nil {
		return cfg, err
	}
	if len(cfg.Tokens) == 0 && !loopback(cfg.Addr) {
		return cfg, fmt.Errorf("refusing to listen on %s without a token: pass --token or FLEETRUN_TOKEN, or listen on 127.0.0.1", cfg.Addr)
	}
	if cfg.PublicURL, err = publicURL(cfg.PublicURL); err != nil {
		return cfg, err
	}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"--retention", cfg.Retention > 0}, {"--grace", cfg.Grace > 0}, {"--max-procs", cfg.MaxProcs > 0},
		{"--max-pending", cfg.MaxPending > 0}, {"--max-conns", cfg.MaxConns > 0}, {"--idle-timeout", cfg.IdleTimeout > 0},
		{"--body-timeout", cfg.BodyTimeout > 0}, {"--max-streams", cfg.MaxStreams > 0}, {"--max-streams-per-owner", cfg.MaxStreamsPerOwner > 0},
	} {
		if !c.ok {
			return cfg, fmt.Errorf("%s must be positive", c.name)
		}
	}
	if cfg.Cgroups != "auto" && cfg.Cgroups != "off" {
		return cfg, fmt.Errorf("--cgroups %q: want auto or off", cfg.Cgroups)
	}
	if secret == "" {
		secret = getenv("FLEETRUN_WEBHOOK_SECRET")
	}
	if secret != "" {
		if cfg.WebhookSecret, err = webhook.ParseSecret(secret); err != nil {
			return cfg, fmt.Errorf("--webhook-secret: %w", err)
		}
	}
	if cfg.AllowHTTPWebhooks && cfg.WebhookSecret.IsZero() {
		return cfg, fmt.Errorf("--allow-http-webhooks needs a webhook secret: pass --webhook-secret or FLEETRUN_WEBHOOK_SECRET")
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("--log-format %q: want text or json", cfg.LogFormat)
	}
	if cfg.MetricsAddr != "" && !loopback(cfg.MetricsAddr) {
		return cfg, fmt.Errorf("--metrics-addr %s: want a loopback address, since it serves without a token", cfg.MetricsAddr)
	}
	return cfg, nil
}

// parseTokens reads the --token values, OWNER=SECRET each, or else the one secret of env. The
// two forms never mix, so neither is ever guessed: a flag value is split at its first "=" (an
// owner has none), and the environment's value is taken whole, "=" and all.
func parseTokens(flags []string, env string) (map[string]string, error) {
	tokens := make(map[string]string)
	add := func(owner, secret, from string) error {
		if len(secret) < minSecretLength {
			return fmt.Errorf("%s: the secret must be at least %d characters", from, minSecretLength)
		}
		if _, dup := tokens[secret]; dup {
			return fmt.Errorf("%s: the same secret is given twice", from)
		}
		tokens[secret] = owner
		return nil
	}
	for _, v := range flags {
		owner, secret, ok := strings.Cut(v, "=")
		if !ok || !ownerRule.MatchString(owner) {
			return nil, fmt.Errorf("--token %q: want OWNER=SECRET, an owner name (letters, digits, \".\", \"_\", \"@\", \"-\") then \"=\" then the secret; "+
				"a single secret without an owner goes in FLEETRUN_TOKEN", redact(v))
		}
		if err := add(owner, secret, "--token for "+owner); err != nil {
			return nil, err
		}
	}
	if len(flags) == 0 && env != "" {
		if err := add("default", env, "FLEETRUN_TOKEN"); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

// redact shows enough of a mistyped --token value to recognise it, never a whole secret.
func redact(v string) string {
	if len(v) <= 4 {
		return "…"
	}
	return v[:4] + "…"
}

// publicURL checks --public-url: an absolute http or https URL with a host and no query or
// fragment. It returns it without a trailing slash.
func publicURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("--public-url %q: want an http or https URL such as https://fleet.example.com", s)
	}
	return strings.TrimRight(s, "/"), nil
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
