// Package webhooktest is a webhook receiver for tests: an HTTP server on 127.0.0.1 that
// verifies every request the way the Standard Webhooks specification tells a receiver to —
// with code of its own, not the sender's — and answers each path with a scripted status.
package webhooktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

// Request is one request the receiver took, as it saw it.
type Request struct {
	Path string
	// ID and Timestamp are the webhook-id and webhook-timestamp headers.
	ID, Timestamp string
	// Verified says that the request was a POST whose signature verifies under the secret and
	// whose timestamp is within five minutes of the receiver's clock.
	Verified bool
	Event    api.WebhookEvent
	At       time.Time
}

// Receiver is a scripted webhook receiver.
type Receiver struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL     string
	secret  string
	mu      sync.Mutex
	scripts map[string][]int
	got     []Request
}

// Start starts a receiver that verifies requests with secret (whsec_…) and answers each path
// with the next status of scripts[path], the last one repeating (204 for a path without a
// script). It is stopped when the test ends.
func Start(t testing.TB, secret string, scripts map[string][]int) *Receiver {
	rc := &Receiver{secret: secret, scripts: scripts}
	if rc.scripts == nil {
		rc.scripts = map[string][]int{}
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// Verify reports whether r carries a valid signature of body under secret and a timestamp
// within five minutes of now: the key is the base64 after "whsec_", the signed content is
// "id.timestamp.body", and webhook-signature holds space-separated "v1,<base64>" signatures.
func Verify(secret string, r *http.Request, body []byte, now time.Time) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		if b64, ok := strings.CutPrefix(sig, "v1,"); ok {
			if got, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// ServeHTTP implements http.Handler.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{Path: r.URL.Path, ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Verified: r.Method == http.MethodPost && Verify(rc.secret, r, body, time.Now()), At: time.Now()}
	_ = json.Unmarshal(body, &req.Event)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got = append(rc.got, req)
	status := http.StatusNoContent
	if script := rc.scripts[r.URL.Path]; len(script) > 0 {
		status = script[0]
		if len(script) > 1 {
			rc.scripts[r.URL.Path] = script[1:]
		}
	}
	w.WriteHeader(status)
}

// Requests returns what the receiver took on path, in order.
func (rc *Receiver) Requests(path string) []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Request
	for _, r := range rc.got {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Outcomes lists delivery records as "attempt:status:outcome", space-separated ("-" for no
// status), for comparing a task's /deliveries with what a test expects.
func Outcomes(ds []api.Delivery) string {
	var out []string
	for _, d := range ds {
		code := "-"
		if d.StatusCode != nil {
			code = strconv.Itoa(*d.StatusCode)
		}
		out = append(out, fmt.Sprintf("%d:%s:%s", d.Attempt, code, d.Outcome))
	}
	return strings.Join(out, " ")
}
