package serve

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestDefaultLimits(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxProcs < 1 || cfg.MaxConns < 64 || cfg.MaxConns > 10000 || cfg.MaxPending != DefaultMaxPending ||
		cfg.IdleTimeout != DefaultIdleTimeout || cfg.BodyTimeout != DefaultBodyTimeout || cfg.Cgroups != "auto" || cfg.Subreaper {
		t.Errorf("defaults %+v", cfg)
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		tokens  map[string]string
	}{
		{name: "defaults listen on loopback without a token", args: nil, tokens: map[string]string{}},
		{name: "a non-loopback address without a token is refused", args: []string{"--addr", "0.0.0.0:8080"}, wantErr: "refusing to listen"},
		{name: "every interface without a token is refused", args: []string{"--addr", ":8080"}, wantErr: "refusing to listen"},
		{name: "a non-loopback address with a token is allowed", args: []string{"--addr", "0.0.0.0:8080", "--token", "ops=s3cret-value"},
			tokens: map[string]string{"s3cret-value": "ops"}},
		{name: "several owners", args: []string{"--token", "alice=alice-secret", "--token", "bob=bob-secret"},
			tokens: map[string]string{"alice-secret": "alice", "bob-secret": "bob"}},
		{name: "the first = ends the owner; the secret may hold more", args: []string{"--token", "ci=c2VjcmV0cw=="},
			tokens: map[string]string{"c2VjcmV0cw==": "ci"}},
		{name: "the environment holds one whole secret", env: map[string]string{"FLEETRUN_TOKEN": "c2VjcmV0cw=="},
			tokens: map[string]string{"c2VjcmV0cw==": "default"}},
		{name: "the environment's secret is never split", env: map[string]string{"FLEETRUN_TOKEN": "abcdefgh=ijklmnop"},
			tokens: map[string]string{"abcdefgh=ijklmnop": "default"}},
		{name: "a flag overrides the environment", args: []string{"--token", "carol=carol-secret"}, env: map[string]string{"FLEETRUN_TOKEN": "ignored-secret"},
			tokens: map[string]string{"carol-secret": "carol"}},
		{name: "a flag without an owner is refused", args: []string{"--token", "s3cret-value"}, wantErr: "want OWNER=SECRET"},
		{name: "a flag whose owner is not a name is refused", args: []string{"--token", "a b=s3cret-value"}, wantErr: "want OWNER=SECRET"},
		{name: "a refusal does not repeat the secret", args: []string{"--token", "s3cret-value"}, wantErr: `"s3cr…"`},
		{name: "a short secret is refused", args: []string{"--token", "alice=short"}, wantErr: "at least 8"},
		{name: "a short secret in the environment is refused", env: map[string]string{"FLEETRUN_TOKEN": "short"}, wantErr: "at least 8"},
		{name: "the same secret twice is refused", args: []string{"--token", "a=same-secret", "--token", "b=same-secret"}, wantErr: "twice"},
		{name: "a public URL", args: []string{"--public-url", "https://fleet.example.com/"}, tokens: map[string]string{}},
		{name: "a public URL must be http(s)", args: []string{"--public-url", "fleet.example.com"}, wantErr: "--public-url"},
		{name: "a public URL has no query", args: []string{"--public-url", "https://fleet.example.com/?a=b"}, wantErr: "--public-url"},
		{name: "limits must be positive", args: []string{"--max-procs", "0"}, wantErr: "--max-procs must be positive"},
		{name: "cgroups auto or off", args: []string{"--cgroups", "maybe"}, wantErr: "--cgroups"},
		{name: "a stray argument is refused", args: []string{"extra"}, wantErr: "unexpected argument"},
		{name: "localhost counts as loopback", args: []string{"--addr", "localhost:9000"}, tokens: map[string]string{}},
		{name: "IPv6 loopback", args: []string{"--addr", "[::1]:9000"}, tokens: map[string]string{}},
		{name: "JSON logs", args: []string{"--log-format", "json"}, tokens: map[string]string{}},
		{name: "an unknown log format is refused", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "metrics apart on loopback", args: []string{"--metrics-addr", "127.0.0.1:9090"}, tokens: map[string]string{}},
		{name: "metrics apart on a public address are refused", args: []string{"--token", "x=s3cret-value", "--metrics-addr", "0.0.0.0:9090"},
			wantErr: "--metrics-addr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseConfig(c.args, env(c.env), io.Discard)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Tokens) != len(c.tokens) {
				t.Fatalf("tokens = %v, want %v", cfg.Tokens, c.tokens)
			}
			for secret, owner := range c.tokens {
				if cfg.Tokens[secret] != owner {
					t.Fatalf("tokens = %v, want %v", cfg.Tokens, c.tokens)
				}
			}
			if strings.HasSuffix(cfg.PublicURL, "/") {
				t.Errorf("public URL %q keeps its trailing slash", cfg.PublicURL)
			}
		})
	}
}

func TestWebhookSettings(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	cases := []struct {
		name      string
		args      []string
		env       string
		on, http  bool
		wantError string
	}{
		{name: "off by default"},
		{name: "a secret from the flag", args: []string{"--webhook-secret", secret}, on: true},
		{name: "a secret from the environment", env: secret, on: true},
		{name: "http to loopback", args: []string{"--webhook-secret", secret, "--allow-http-webhooks"}, on: true, http: true},
		{name: "http to loopback needs a secret", args: []string{"--allow-http-webhooks"}, wantError: "needs a webhook secret"},
		{name: "a secret of the wrong form", args: []string{"--webhook-secret", "hunter2hunter2"}, wantError: "whsec_"},
		{name: "a short key", env: "whsec_c2hvcnQ=", wantError: "at least 24"},
	}
	for _, c := range cases {
		cfg, err := parseConfig(c.args, func(k string) string {
			if k == "FLEETRUN_WEBHOOK_SECRET" {
				return c.env
			}
			return ""
		}, io.Discard)
		switch {
		case c.wantError != "":
			if err == nil || !strings.Contains(err.Error(), c.wantError) {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.wantError)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case cfg.WebhookSecret.IsZero() == c.on || cfg.AllowHTTPWebhooks != c.http:
			t.Errorf("%s: webhooks on %v, http %v; want %v, %v", c.name, !cfg.WebhookSecret.IsZero(), cfg.AllowHTTPWebhooks, c.on, c.http)
		}
	}
}

func TestHelpShowsDoubleDashFlagsAndTheTokenRules(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if _, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	for _, want := range []string{"  --addr ", "  --token OWNER=SECRET", "at least 8 characters", "$FLEETRUN_TOKEN",
		"  --log-format ", "  --metrics-addr "} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help does not say %q:\n%s", want, help)
		}
	}
	for line := range strings.SplitSeq(help, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "-") && !strings.HasPrefix(strings.TrimSpace(line), "--") {
			t.Errorf("serve --help shows a single-dash flag: %q", line)
		}
	}
}
