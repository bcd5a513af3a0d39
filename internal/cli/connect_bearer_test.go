package cli

import "testing"

func TestBearerSendsTheWholeSecret(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"s3cretvalue":       "s3cretvalue",
		" s3cretvalue\n":    "s3cretvalue",
		"c2VjcmV0cw==":      "c2VjcmV0cw==",
		"abcdefgh=ijklmnop": "abcdefgh=ijklmnop",
		"":                  "",
	} {
		if got := bearer(in); got != want {
			t.Errorf("bearer(%q) = %q, want %q", in, got, want)
		}
	}
}
