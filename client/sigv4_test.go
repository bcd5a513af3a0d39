package client

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fleetrun/fleetrun/api"
)

func staticCreds(id, secret, session string) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: session}, nil
	})
}

// TestSigV4MatchesPublishedVectors signs requests of AWS's Signature Version 4 test suite with
// its credentials, time, region and service, and compares the Authorization header with the
// one the suite publishes (files get-vanilla.authz and get-vanilla-query-order-key-case.authz).
func TestSigV4MatchesPublishedVectors(t *testing.T) {
	t.Parallel()
	const scope = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="
	cases := []struct {
		name, url, want string
	}{
		{"get-vanilla", "https://example.amazonaws.com/",
			scope + "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"get-vanilla-query-order-key-case", "https://example.amazonaws.com/?Param2=value2&Param1=value1",
			scope + "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
	}
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	s := newSigner("service", "us-east-1", staticCreds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.sign(t.Context(), req, nil, at); err != nil {
				t.Fatal(err)
			}
			if got := req.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q, want 20150830T123600Z", got)
			}
			if got := req.Header.Get("Authorization"); got != tc.want {
				t.Errorf("Authorization =\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
}

func TestClientSignsEveryAttempt(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []http.Header
	)
	c, clock := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			writeProblem(w, api.Problem{Title: "Too many requests", Status: 429})
			return
		}
		writeJSON(w, http.StatusAccepted, taskAt("t1", api.StatusPending, 1, 0, 1))
	}), WithSigV4("eu-west-1", staticCreds("AKIDTEST", "secret", "session-token")))
	if _, err := c.Submit(t.Context(), api.SubmitRequest{DeviceIDs: []string{"a"}, ScriptURL: "s3://b/k"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(seen))
	}
	day := clock.Now().Format("20060102")
	for i, h := range seen {
		auth := h.Get("Authorization")
		if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(auth, "/eu-west-1/execute-api/aws4_request") {
			t.Errorf("request %d: Authorization = %q, want an execute-api SigV4 signature", i, auth)
		}
		for _, signed := range []string{"content-type", "host", "idempotency-key", "x-amz-date", "x-amz-security-token"} {
			if !strings.Contains(auth, signed) {
				t.Errorf("request %d: header %s is not signed: %s", i, signed, auth)
			}
		}
		if h.Get("X-Amz-Security-Token") != "session-token" {
			t.Errorf("request %d: X-Amz-Security-Token = %q", i, h.Get("X-Amz-Security-Token"))
		}
		if !strings.HasPrefix(h.Get("X-Amz-Date"), day) {
			t.Errorf("request %d: X-Amz-Date = %q, want the client clock's day %s", i, h.Get("X-Amz-Date"), day)
		}
	}
	// The retry waited, so it was signed at a later time, and with a new signature.
	if seen[0].Get("X-Amz-Date") == seen[1].Get("X-Amz-Date") || seen[0].Get("Authorization") == seen[1].Get("Authorization") {
		t.Errorf("the retry reused the first signature: %q", seen[1].Get("Authorization"))
	}
}
