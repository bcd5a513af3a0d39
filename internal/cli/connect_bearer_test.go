package cli

import "testing"

func TestBearerAcceptsTheServersTokenForms(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"s3cretvalue":                          "s3cretvalue",
		"alice=s3cretvalue":                    "s3cretvalue",
		"alice=s3cretvalue,bob=0therSecret":    "s3cretvalue",
		" alice=s3cretvalue , bob=0therSecret": "s3cretvalue",
		"":                                     "",
	} {
		if got := bearer(in); got != want {
			t.Errorf("bearer(%q) = %q, want %q", in, got, want)
		}
	}
}
