package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestReceiverVerifies sends the receiver requests signed as fleetrun signs them, and others.
func TestReceiverVerifies(t *testing.T) {
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	other, err := webhook.ParseSecret("whsec_" + strings.Repeat("A", 32))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"type":"task.finished","id":"01M8CJ3C8HFRJEFSQ4J5YTJ03B","status":"completed"}`
	now := time.Now().Unix()
	for _, c := range []struct {
		name       string
		signer     webhook.Secret
		at         int64
		body, id   string
		signatures func(sig string) string
		want       int
	}{
		{name: "signed", signer: key, at: now, want: http.StatusNoContent},
		{name: "one of several signatures", signer: key, at: now, want: http.StatusNoContent,
			signatures: func(sig string) string { return "v1,bm90IGl0 " + sig }},
		{name: "another secret", signer: other, at: now, want: http.StatusUnauthorized},
		{name: "another body", signer: key, at: now, body: body + " ", want: http.StatusUnauthorized},
		{name: "another id", signer: key, at: now, id: "01M8CJ3C8HFRJEFSQ4J5YTJ03B_started", want: http.StatusUnauthorized},
		{name: "ten minutes old", signer: key, at: now - 600, want: http.StatusUnauthorized},
		{name: "no version", signer: key, at: now, want: http.StatusUnauthorized,
			signatures: func(sig string) string { return strings.TrimPrefix(sig, "v1,") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			sig := c.signer.Sign("01M8CJ3C8HFRJEFSQ4J5YTJ03B_finished", c.at, []byte(body))
			if c.signatures != nil {
				sig = c.signatures(sig)
			}
			sent, id := body, "01M8CJ3C8HFRJEFSQ4J5YTJ03B_finished"
			if c.body != "" {
				sent = c.body
			}
			if c.id != "" {
				id = c.id
			}
			req := httptest.NewRequest(http.MethodPost, "/fleetrun", strings.NewReader(sent))
			req.Header.Set("webhook-id", id)
			req.Header.Set("webhook-timestamp", strconv.FormatInt(c.at, 10))
			req.Header.Set("webhook-signature", sig)
			rec := httptest.NewRecorder()
			receive(secret).ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Errorf("%d, want %d", rec.Code, c.want)
			}
		})
	}
}

// TestReadmeShowsTheReceiver keeps the README's receiver the one tested here.
func TestReadmeShowsTheReceiver(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, code, _ := strings.Cut(string(src), "// verified reports")
	code = "// verified reports" + code
	if !strings.Contains(string(readme), code) {
		t.Errorf("README.md does not show examples/webhook-receiver/main.go from its verified function on")
	}
}
