package ssmcmd_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/ssmcmd"
)

func TestCheckScript(t *testing.T) {
	t.Parallel()
	check := ssmcmd.CheckScript([]string{"fleet-scripts", "ops.example.com"})
	for _, tc := range []struct {
		url  string
		want string // substring of the error, "" for accepted
	}{
		{"s3://fleet-scripts/patch.sh", ""},
		{"s3://fleet-scripts/ops/2024/patch v2.sh", ""},
		{"s3://ops.example.com/run.py", ""},
		{"s3://other-bucket/patch.sh", "not one this deployment runs scripts from"},
		{"https://fleet-scripts.s3.amazonaws.com/patch.sh", "must be an S3 URL"},
		{"file:///etc/passwd", "must be an S3 URL"},
		{"/opt/scripts/patch.sh", "must be an S3 URL"},
		{"", "must be an S3 URL"},
		{"s3://fleet-scripts", "must name a script file"},
		{"s3://fleet-scripts/", "must name a script file"},
		{"s3://fleet-scripts/ops/", "must name a script file"},
		{"s3://fleet-scripts/..", "must name a script file"},
		{"s3://fleet-scripts/a\nb.sh", "control characters"},
		{"s3://Fleet_Scripts/patch.sh", "not a valid S3 bucket name"},
		{"s3://ab/patch.sh", "not a valid S3 bucket name"},
		{"s3://fleet..scripts/patch.sh", "not a valid S3 bucket name"},
	} {
		err := check(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.url, err, tc.want)
		}
	}
	if err := ssmcmd.CheckScript(nil)("s3://fleet-scripts/patch.sh"); err == nil {
		t.Error("with no allowed bucket a script was accepted")
	}
}

func TestHTTPSURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"s3://fleet-scripts/patch.sh", "https://fleet-scripts.s3.amazonaws.com/patch.sh"},
		{"s3://fleet-scripts/ops/patch v2.sh", "https://fleet-scripts.s3.amazonaws.com/ops/patch%20v2.sh"},
		{"s3://ops.example.com/a/b.sh", "https://s3.amazonaws.com/ops.example.com/a/b.sh"},
	} {
		obj, err := ssmcmd.ParseScriptURL(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if got := obj.HTTPSURL(); got != tc.want {
			t.Errorf("%s → %s, want %s", tc.url, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"--dry-run", "--dry-run"},
		{"/var/log/app.log", "/var/log/app.log"},
		{"user@host:8080", "user@host:8080"},
		{"", "''"},
		{"two words", "'two words'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{"$HOME", "'$HOME'"},
		{"$(rm -rf /)", "'$(rm -rf /)'"},
		{"`id`", "'`id`'"},
		{"a\nb", "'a\nb'"},
		{"*.log", "'*.log'"},
		{"a;b|c&d", "'a;b|c&d'"},
		{`back\slash`, `'back\slash'`},
		{"--level=debug", "'--level=debug'"},
		{"~root", "'~root'"},
		{"naïve", "'naïve'"},
	} {
		if got := ssmcmd.ShellQuote(tc.in); got != tc.want {
			t.Errorf("ShellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := ssmcmd.CommandLine("patch.sh", []string{"--dry-run", "it's here"}); got != `patch.sh --dry-run 'it'\''s here'` {
		t.Errorf("CommandLine = %s", got)
	}
}

// TestShellQuoteRoundTrip hands quoted args to a real POSIX shell and checks that each arrives
// as exactly the argument it was.
func TestShellQuoteRoundTrip(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no POSIX shell on this machine")
	}
	args := []string{"plain", "", "two words", "it's", "''", `"double"`, "$HOME", "$(echo pwned)", "`id`",
		"line1\nline2", "tab\there", "*", "a;b|c&d>e<f", `back\slash\`, "--opt=val", "~", "#not-a-comment", "!bang", "naïve ☃"}
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = ssmcmd.ShellQuote(a)
	}
	out, err := exec.Command(sh, "-c", `set -- `+strings.Join(words, " ")+`; printf '%s\0' "$@"`).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !bytes.Equal(out, []byte(strings.Join(args, "\x00")+"\x00")) {
		t.Fatalf("the shell received %q, want %q", got, args)
	}
}
