package webhook

import (
	"strings"
	"testing"
)

func TestSignMatchesTheSpecification(t *testing.T) {
	t.Parallel()
	// The example of the Standard Webhooks specification's reference libraries.
	s, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if strings.Contains(s.String(), "MfKQ") {
		t.Errorf("String reveals the key: %s", s)
	}
}

func TestParseSecretRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!!", "whsec_c2hvcnQ="} {
		if _, err := ParseSecret(in); err == nil {
			t.Errorf("ParseSecret(%q) accepted it", in)
		}
	}
}
