package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// secretPrefix starts a Standard Webhooks secret.
const secretPrefix = "whsec_"

// minSecretBytes is the shortest key a secret may have: the specification asks for 24 to 64
// random bytes.
const minSecretBytes = 24

// Secret is the deployment's signing key. Its String never shows the key.
type Secret struct{ key []byte }

// ParseSecret reads a secret in the specification's form: "whsec_" and the key in standard
// base64, at least 24 bytes of it.
func ParseSecret(s string) (Secret, error) {
	s = strings.TrimSpace(s)
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return Secret{}, errors.New(`a webhook secret starts with "whsec_" followed by base64`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Secret{}, fmt.Errorf("the webhook secret after \"whsec_\" is not standard base64: %w", err)
	}
	if len(key) < minSecretBytes {
		return Secret{}, fmt.Errorf("the webhook secret's key is %d bytes; it must be at least %d random bytes", len(key), minSecretBytes)
	}
	return Secret{key: key}, nil
}

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String implements fmt.Stringer without revealing the key.
func (s Secret) String() string { return "whsec_…" }

// Sign returns the webhook-signature header value of a request: "v1," and the base64
// HMAC-SHA256, under the key, of the event id, the Unix timestamp and the body, joined by dots.
func (s Secret) Sign(id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
