package lambdahttp

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// gatewayEvent is a REST API proxy event (payload 1.0) as API Gateway sends it for the stage
// v1 of the execute-api endpoint, with IAM authorization.
func gatewayEvent() events.APIGatewayProxyRequest {
	return events.APIGatewayProxyRequest{
		Resource:   "/tasks/{id}/devices",
		Path:       "/tasks/01JD/devices",
		HTTPMethod: "GET",
		Headers: map[string]string{
			"Host":              "abc123.execute-api.eu-west-1.amazonaws.com",
			"If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT",
			"Prefer":            "respond-async",
			"X-Forwarded-Proto": "https",
			"Content-Length":    "999",
			"Cookie":            "a=1; b=2",
		},
		MultiValueHeaders: map[string][]string{
			"Host":              {"abc123.execute-api.eu-west-1.amazonaws.com"},
			"If-Modified-Since": {"Wed, 21 Oct 2015 07:28:00 GMT"},
			"Prefer":            {"wait=5", "respond-async"},
			"X-Forwarded-Proto": {"https"},
			"Content-Length":    {"999"},
			"Cookie":            {"a=1; b=2"},
		},
		QueryStringParameters:           map[string]string{"status": "timed_out", "limit": "2"},
		MultiValueQueryStringParameters: map[string][]string{"status": {"failed", "timed_out"}, "limit": {"2"}},
		PathParameters:                  map[string]string{"id": "01JD"},
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID: "123456789012", ResourceID: "r1", Stage: "v1", DomainName: "abc123.execute-api.eu-west-1.amazonaws.com",
			RequestID: "JKJaXmPLvHcESHA=", Protocol: "HTTP/1.1", ResourcePath: "/tasks/{id}/devices",
			Path: "/v1/tasks/01JD/devices", HTTPMethod: "GET", APIID: "abc123",
			Identity: events.APIGatewayRequestIdentity{SourceIP: "192.0.2.1", AccountID: "123456789012",
				UserArn: "arn:aws:iam::123456789012:user/alice", Caller: "AIDAEXAMPLE", User: "AIDAEXAMPLE"},
		},
	}
}

func TestNewRequest(t *testing.T) {
	t.Parallel()
	r, err := NewRequest(context.Background(), gatewayEvent())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"method", r.Method, "GET"},
		{"path", r.URL.Path, "/tasks/01JD/devices"},
		{"query", r.URL.RawQuery, "limit=2&status=failed&status=timed_out"},
		{"request URI", r.RequestURI, "/tasks/01JD/devices?limit=2&status=failed&status=timed_out"},
		{"host", r.Host, "abc123.execute-api.eu-west-1.amazonaws.com"},
		{"remote address", r.RemoteAddr, "192.0.2.1"},
		{"a date keeps its comma", r.Header.Get("If-Modified-Since"), "Wed, 21 Oct 2015 07:28:00 GMT"},
		{"no stale Content-Length", r.Header.Get("Content-Length"), ""},
		{"base URL", BaseURL(r), "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if got := r.Header.Values("Prefer"); len(got) != 2 || got[0] != "wait=5" {
		t.Errorf("a header sent twice = %q, want both values in order", got)
	}
	if c, err := r.Cookie("b"); err != nil || c.Value != "2" {
		t.Errorf("cookie b = %v, %v", c, err)
	}
	if r.ContentLength != 0 || r.Body != http.NoBody {
		t.Errorf("an event without a body gave ContentLength %d and body %v", r.ContentLength, r.Body)
	}
	rc, ok := RequestContext(r.Context())
	if !ok || rc.RequestID != "JKJaXmPLvHcESHA=" {
		t.Errorf("RequestContext = %+v, %v", rc, ok)
	}
}

func TestNewRequestBodies(t *testing.T) {
	t.Parallel()
	binary := []byte{0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe}
	tests := []struct {
		name    string
		body    string
		base64  bool
		want    []byte
		wantErr bool
	}{
		{"plain", `{"deviceIds":["i-1"]}`, false, []byte(`{"deviceIds":["i-1"]}`), false},
		{"base64", base64.StdEncoding.EncodeToString(binary), true, binary, false},
		{"bad base64", "not base64!", true, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := gatewayEvent()
			ev.Resource, ev.Path, ev.HTTPMethod = "/tasks", "/tasks", "POST"
			ev.Body, ev.IsBase64Encoded = tt.body, tt.base64
			r, err := NewRequest(context.Background(), ev)
			if tt.wantErr {
				if err == nil {
					t.Fatal("NewRequest accepted a body that is not base64")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r.Body)
			if err != nil || string(got) != string(tt.want) || r.ContentLength != int64(len(tt.want)) {
				t.Errorf("body = %q (length %d), %v; want %q", got, r.ContentLength, err, tt.want)
			}
		})
	}
}

func TestNewRequestFallbacks(t *testing.T) {
	t.Parallel()
	// A hand-written event (sam local, a test) may have single-value maps only, no request
	// context path and no Host header.
	ev := events.APIGatewayProxyRequest{
		Resource: "/tasks", Path: "/tasks", HTTPMethod: "get",
		QueryStringParameters: map[string]string{"status": "running", "limit": "5"},
		RequestContext:        events.APIGatewayProxyRequestContext{Stage: "v1", DomainName: "api.example.com"},
	}
	r, err := NewRequest(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.URL.Path != "/tasks" || r.URL.RawQuery != "limit=5&status=running" || r.Host != "api.example.com" {
		t.Errorf("got %s %s?%s host %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Host)
	}
	if got := BaseURL(r); got != "https://api.example.com/v1" {
		t.Errorf("BaseURL = %q", got)
	}
	// A path that starts with two slashes is a path, not a host; an escaped one keeps its
	// escapes.
	ev.Path = "//tasks"
	if r, err = NewRequest(context.Background(), ev); err != nil || r.URL.Path != "//tasks" {
		t.Errorf("//tasks gave %v, %v", r.URL, err)
	}
	ev.Path = "/tasks/a%2Fb"
	if r, err = NewRequest(context.Background(), ev); err != nil || r.URL.Path != "/tasks/a/b" || r.URL.EscapedPath() != "/tasks/a%2Fb" {
		t.Errorf("/tasks/a%%2Fb gave %v, %v", r.URL, err)
	}
}

func TestOwner(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		identity   string
		authorizer map[string]any
		want       string
	}{
		{"IAM", "arn:aws:sts::123456789012:assumed-role/ops/bob", nil, "arn:aws:sts::123456789012:assumed-role/ops/bob"},
		{"Cognito user pool", "", map[string]any{"claims": map[string]any{"sub": "user-42", "iss": "https://issuer"}}, "user-42"},
		{"Lambda authorizer", "", map[string]any{"principalId": "mallory"}, "mallory"},
		{"none", "", nil, ""},
		{"claims without a subject", "", map[string]any{"claims": map[string]any{"iss": "x"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := gatewayEvent()
			ev.RequestContext.Identity.UserArn, ev.RequestContext.Authorizer = tt.identity, tt.authorizer
			r, err := NewRequest(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Owner(r)
			if tt.want == "" {
				if !errors.Is(err, ErrNoIdentity) || got != "" {
					t.Errorf("Owner = %q, %v; want ErrNoIdentity", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Owner = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// A request that did not come through NewRequest has no identity at all.
	r, _ := http.NewRequest(http.MethodGet, "/tasks", nil)
	if _, err := Owner(r); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("Owner of a plain request: %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, domain, stage, path, fullPath, want string
	}{
		{"execute-api endpoint, stage v1", "abc123.execute-api.eu-west-1.amazonaws.com", "v1", "/tasks", "/v1/tasks",
			"https://abc123.execute-api.eu-west-1.amazonaws.com/v1"},
		{"custom domain with a base path", "fleet.example.com", "v1", "/tasks/01JD", "/fleet/tasks/01JD", "https://fleet.example.com/fleet"},
		{"custom domain with a base path of two levels", "fleet.example.com", "v1", "/tasks", "/ops/fleet/tasks", "https://fleet.example.com/ops/fleet"},
		{"custom domain at the root", "fleet.example.com", "v1", "/tasks", "/tasks", "https://fleet.example.com"},
		{"a path that is not the end of the full path", "fleet.example.com", "v1", "/tasks", "/v1/other", "https://fleet.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// What the caller sends in Host and X-Forwarded-* reaches the function as it was
			// sent: links never come from it.
			ev := events.APIGatewayProxyRequest{Resource: tt.path, Path: tt.path, HTTPMethod: "POST",
				Headers:        map[string]string{"Host": "evil.example", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example"},
				RequestContext: events.APIGatewayProxyRequestContext{Stage: tt.stage, DomainName: tt.domain, Path: tt.fullPath}}
			r, err := NewRequest(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := BaseURL(r); got != tt.want {
				t.Errorf("BaseURL = %q, want %q", got, tt.want)
			}
		})
	}
}
