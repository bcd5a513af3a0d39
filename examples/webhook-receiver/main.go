// Command webhook-receiver receives fleetrun's webhooks on 127.0.0.1:9000/fleetrun and checks
// each signature with the secret in FLEETRUN_WEBHOOK_SECRET, as the Standard Webhooks
// specification says a receiver should.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// verified reports whether webhook-signature signs "id.timestamp.body" under the secret and
// webhook-timestamp is within five minutes of now.
func verified(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts, tsErr := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || tsErr != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.%s", h.Get("webhook-id"), ts, body)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) { // "v1,<base64> v1,<base64>…"
		got, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "v1,"))
		if strings.HasPrefix(sig, "v1,") && err == nil && hmac.Equal(got, mac.Sum(nil)) {
			return true
		}
	}
	return false
}

// receive answers 204 to a verified webhook and 401 to anything else (a 4xx is never retried).
func receive(secret string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil || !verified(secret, r.Header, body) {
			http.Error(w, "unverified", http.StatusUnauthorized)
			return
		}
		// webhook-id is the same in every retry of an event: a receiver dedupes on it.
		log.Printf("%s %s", r.Header.Get("webhook-id"), body)
		w.WriteHeader(http.StatusNoContent)
	}
}

func main() {
	http.Handle("POST /fleetrun", receive(os.Getenv("FLEETRUN_WEBHOOK_SECRET")))
	log.Fatal(http.ListenAndServe("127.0.0.1:9000", nil))
}
