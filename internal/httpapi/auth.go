package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// ErrUnauthorized is returned by an Owner function when the request does not identify a caller.
var ErrUnauthorized = errors.New("httpapi: no valid credentials")

// BearerTokens returns an Owner function for the local server. tokens maps each secret to the
// owner it identifies. With no tokens every request belongs to fallbackOwner (a single-user
// server on a trusted machine); otherwise "Authorization: Bearer <secret>" is required.
//
// Secrets are compared through their SHA-256 digests with subtle.ConstantTimeCompare, and every
// secret is compared on every request, so neither the length nor the content of a secret leaks
// through timing.
func BearerTokens(tokens map[string]string, fallbackOwner string) func(*http.Request) (string, error) {
	if len(tokens) == 0 {
		return func(*http.Request) (string, error) { return fallbackOwner, nil }
	}
	type entry struct {
		digest [sha256.Size]byte
		owner  string
	}
	entries := make([]entry, 0, len(tokens))
	for secret, owner := range tokens {
		entries = append(entries, entry{sha256.Sum256([]byte(secret)), owner})
	}
	return func(r *http.Request) (string, error) {
		scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", ErrUnauthorized
		}
		digest := sha256.Sum256([]byte(strings.TrimSpace(secret)))
		owner := ""
		for _, e := range entries {
			if subtle.ConstantTimeCompare(digest[:], e.digest[:]) == 1 {
				owner = e.owner
			}
		}
		if owner == "" {
			return "", ErrUnauthorized
		}
		return owner, nil
	}
}
