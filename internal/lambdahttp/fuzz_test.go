package lambdahttp

import (
	"bytes"
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

// FuzzAdapter feeds REST API proxy events, as JSON, through the adapter and a small handler
// that echoes the body: the function must always answer, what the handler sees must be a
// well-formed request, and a streamed route (the resource /stream) must answer with the JSON
// prelude, eight NUL bytes and the body. The sample events of the repository and testdata/fuzz
// are its seeds; `make fuzz` runs it longer.
func FuzzAdapter(f *testing.F) {
	samples, _ := filepath.Glob("../../events/*.json")
	for _, p := range samples {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"resource":"/tasks/{id}","path":"/tasks/x","httpMethod":"GET","requestContext":{"stage":"prod","path":"/prod/tasks/x","domainName":"d.example"}}`))
	f.Add([]byte(`{"path":"//a/../b","body":"%%%","isBase64Encoded":true}`))

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
	handler := Handler(echo, Options{Streamed: []string{"/stream"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev events.APIGatewayProxyRequest
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		want := ev.Body
		if ev.IsBase64Encoded {
			b, _ := base64.StdEncoding.DecodeString(ev.Body)
			want = string(b)
		}
		out, err := handler(context.Background(), ev)
		if err != nil {
			t.Fatalf("the function returned an error: %v", err)
		}
		var status int
		var contentType, got string
		switch res := out.(type) {
		case events.APIGatewayProxyResponse:
			status, contentType, got = res.StatusCode, res.Headers["Content-Type"], res.Body
			if res.IsBase64Encoded {
				b, _ := base64.StdEncoding.DecodeString(res.Body)
				got = string(b)
			}
		case *events.APIGatewayProxyStreamingResponse:
			raw, err := io.ReadAll(res)
			if err != nil {
				t.Fatal(err)
			}
			prelude, body, ok := bytes.Cut(raw, make([]byte, 8))
			var meta struct {
				StatusCode int               `json:"statusCode"`
				Headers    map[string]string `json:"headers"`
			}
			if !ok || json.Unmarshal(prelude, &meta) != nil || meta.StatusCode != res.StatusCode {
				t.Fatalf("a streamed answer without its prelude and delimiter: %q", raw)
			}
			status, contentType, got = meta.StatusCode, meta.Headers["Content-Type"], string(body)
		default:
			t.Fatalf("the function answered %T", out)
		}
		switch status {
		case http.StatusOK:
			if got != want {
				t.Fatalf("the body came back as %q, want %q", got, want)
			}
		case http.StatusBadRequest:
			if contentType != "application/problem+json" || !utf8.ValidString(got) {
				t.Fatalf("a 400 that is not a problem: %d %q %q", status, contentType, got)
			}
		default:
			t.Fatalf("status %d: %q", status, got)
		}
	})
}
