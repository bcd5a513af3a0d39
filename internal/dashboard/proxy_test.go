package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/dashboard"
)

func TestLoopbackHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.1:8081": true, "127.1.2.3:80": true, "[::1]:8081": true, "::1": true,
		"localhost": true, "LOCALHOST:8081": true,
		"0.0.0.0:8081": false, ":8081": false, "192.0.2.1": false, "evil.example": false,
		"localhost.evil.example:8081": false, "": false,
	} {
		if got := dashboard.LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// countingRelay answers nothing itself: it counts the requests the proxy would relay.
type countingRelay struct{ n int }

func (c *countingRelay) Request(ctx context.Context, method, path, rawQuery string, header http.Header, body []byte) (*http.Request, error) {
	c.n++
	return http.NewRequestWithContext(ctx, method, "http://127.0.0.1:9"+path, nil)
}

func (c *countingRelay) Authenticated() bool { return true }

func TestProxyAnswersOnlyItsOwnLoopbackOrigin(t *testing.T) {
	t.Parallel()
	relay := &countingRelay{}
	endpoint, _ := url.Parse("https://abc123.execute-api.eu-west-1.amazonaws.com/prod")
	h := dashboard.Proxy(dashboard.ProxyConfig{Endpoint: endpoint, Relay: relay})
	cases := []struct {
		name, method, host, path string
		header                   map[string]string
		want                     int
	}{
		{"the page", "GET", "127.0.0.1:8081", "/prod/ui/", nil, http.StatusOK},
		{"a module", "GET", "localhost:8081", "/prod/ui/js/app.js", nil, http.StatusOK},
		{"a browser at the root", "GET", "127.0.0.1:8081", "/", map[string]string{"Accept": "text/html"}, http.StatusSeeOther},
		{"a rebound name", "GET", "evil.example:8081", "/prod/tasks", nil, http.StatusMisdirectedRequest},
		{"a cross-site submit", "POST", "127.0.0.1:8081", "/prod/tasks", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"outside the stage", "GET", "127.0.0.1:8081", "/other/tasks", nil, http.StatusNotFound},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, "http://"+tc.host+tc.path, strings.NewReader(""))
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want %d: %s", tc.name, rec.Code, tc.want, rec.Body)
		}
		if tc.want == http.StatusSeeOther && rec.Header().Get("Location") != "/prod/ui/" {
			t.Errorf("%s: Location %q", tc.name, rec.Header().Get("Location"))
		}
		if tc.want == http.StatusOK && rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no Content-Security-Policy", tc.name)
		}
	}
	if relay.n != 0 {
		t.Errorf("the proxy relayed %d refused requests", relay.n)
	}
}
