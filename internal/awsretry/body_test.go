package awsretry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// lateReader is a transport that answers at once and reads the request body only afterwards, as
// net/http's write loop may still be doing when the response has arrived.
type lateReader struct {
	mu   sync.Mutex
	body io.ReadCloser
}

func (l *lateReader) Do(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.body = req.Body
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

// closeOnce is a body the caller closes after the round trip, as the SDK does; a read after
// the close fails, as the SDK's safe body does.
type closeOnce struct {
	r      *strings.Reader
	closed bool
}

func (c *closeOnce) Read(p []byte) (int, error) {
	if c.closed {
		return 0, io.EOF
	}
	return c.r.Read(p)
}

func (c *closeOnce) Close() error { c.closed = true; return nil }

func TestBufferBodiesKeepsTheBodyPastTheCallersClose(t *testing.T) {
	t.Parallel()
	const payload = `{"CommandId":"c-1","Details":true}`
	for _, tc := range []struct {
		name     string
		client   func(*lateReader) aws.HTTPClient
		wantSent string
	}{
		{"unbuffered: the close empties what the transport sends", func(l *lateReader) aws.HTTPClient { return l }, ""},
		{"buffered: the transport sends the whole body", func(l *lateReader) aws.HTTPClient { return BufferBodies(l) }, payload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			late := &lateReader{}
			body := &closeOnce{r: strings.NewReader(payload)}
			req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", body)
			req.ContentLength = int64(len(payload))
			if _, err := tc.client(late).Do(req); err != nil {
				t.Fatal(err)
			}
			body.Close() // the SDK closes its body once the round trip returns
			sent, _ := io.ReadAll(late.body)
			if string(sent) != tc.wantSent {
				t.Errorf("the transport sent %q, want %q", sent, tc.wantSent)
			}
		})
	}
}

func TestBufferBodiesPassesLargeAndUnknownBodiesThrough(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{-1, MaxBufferedBody + 1} {
		late := &lateReader{}
		body := io.NopCloser(bytes.NewReader(make([]byte, max(n, 0))))
		req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1/", body)
		req.ContentLength = n
		if _, err := BufferBodies(late).Do(req); err != nil {
			t.Fatal(err)
		}
		if late.body != body {
			t.Errorf("a body of length %d was copied; it should be streamed as given", n)
		}
	}
}

// TestLoadConfigHasAClient: config.LoadDefaultConfig leaves HTTPClient nil unless something
// configures one; the loaded configuration must still send requests.
func TestLoadConfigHasAClient(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "")
	cfg, err := LoadConfig(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "{}" {
		t.Errorf("echoed %q", b)
	}
}
