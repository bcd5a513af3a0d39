package lambdahttp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// FuzzAdapter feeds API Gateway events, as JSON, through the adapter and a small handler: the
// function must always answer, and what the handler sees must be a well-formed request. The
// sample events of the repository and testdata/fuzz are its seeds; `make fuzz` runs it longer.
func FuzzAdapter(f *testing.F) {
	samples, _ := filepath.Glob("../../events/*.json")
	for _, p := range samples {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"routeKey":"GET /tasks/{id}","rawPath":"/prod/tasks/x","requestContext":{"stage":"prod","domainName":"d.example","http":{"method":"GET"}}}`))
	f.Add([]byte(`{"rawPath":"//a/../b","body":"%%%","isBase64Encoded":true}`))
	f.Add([]byte(`{"routeKey":"$default","rawQueryString":"a=%zz","headers":{"Host":"evil.example","X-Forwarded-Proto":"http"}}`))

	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/") {
			panic("a path that does not start with /: " + r.URL.Path)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		if r.ContentLength != int64(len(body)) {
			panic("Content-Length does not match the body")
		}
		if base := BaseURL(r); !strings.HasPrefix(base, "https://") {
			panic("a base URL that is not https: " + base)
		}
		_, _ = Owner(r)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	handler := Handler(echo, Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev events.APIGatewayV2HTTPRequest
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		res, err := handler(context.Background(), ev)
		if err != nil {
			t.Fatalf("the function returned an error: %v", err)
		}
		switch res.StatusCode {
		case http.StatusOK:
			want := ev.Body
			if ev.IsBase64Encoded {
				b, _ := base64.StdEncoding.DecodeString(ev.Body)
				want = string(b)
			}
			got := res.Body
			if res.IsBase64Encoded {
				b, _ := base64.StdEncoding.DecodeString(res.Body)
				got = string(b)
			}
			if got != want {
				t.Fatalf("the body came back as %q, want %q", got, want)
			}
		case http.StatusBadRequest:
			if res.Headers["Content-Type"] != "application/problem+json" || !utf8.ValidString(res.Body) {
				t.Fatalf("a 400 that is not a problem: %+v", res)
			}
		default:
			t.Fatalf("status %d: %+v", res.StatusCode, res)
		}
	})
}
