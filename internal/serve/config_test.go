package serve

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

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
		{name: "a non-loopback address with a token is allowed", args: []string{"--addr", "0.0.0.0:8080", "--token", "s3cret-value"},
			tokens: map[string]string{"s3cret-value": "default"}},
		{name: "several owners", args: []string{"--token", "alice=alice-secret", "--token", "bob=bob-secret"},
			tokens: map[string]string{"alice-secret": "alice", "bob-secret": "bob"}},
		{name: "tokens from the environment", env: map[string]string{"FLEETRUN_TOKEN": "alice=alice-secret,bob=bob-secret"},
			tokens: map[string]string{"alice-secret": "alice", "bob-secret": "bob"}},
		{name: "a flag overrides the environment", args: []string{"--token", "carol=carol-secret"}, env: map[string]string{"FLEETRUN_TOKEN": "x=ignored-secret"},
			tokens: map[string]string{"carol-secret": "carol"}},
		{name: "a short secret is refused", args: []string{"--token", "alice=short"}, wantErr: "at least 8"},
		{name: "the same secret twice is refused", args: []string{"--token", "a=same-secret", "--token", "b=same-secret"}, wantErr: "twice"},
		{name: "a stray argument is refused", args: []string{"extra"}, wantErr: "unexpected argument"},
		{name: "localhost counts as loopback", args: []string{"--addr", "localhost:9000"}, tokens: map[string]string{}},
		{name: "IPv6 loopback", args: []string{"--addr", "[::1]:9000"}, tokens: map[string]string{}},
		{name: "JSON logs", args: []string{"--log-format", "json"}, tokens: map[string]string{}},
		{name: "an unknown log format is refused", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "metrics apart on loopback", args: []string{"--metrics-addr", "127.0.0.1:9090"}, tokens: map[string]string{}},
		{name: "metrics apart on a public address are refused", args: []string{"--token", "s3cret-value", "--metrics-addr", "0.0.0.0:9090"},
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
		})
	}
}

func TestHelpShowsDoubleDashFlagsAndTheTokenRules(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if _, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	for _, want := range []string{"  --addr ", "  --token SECRET", "at least 8 characters", "OWNER=SECRET", "$FLEETRUN_TOKEN",
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
