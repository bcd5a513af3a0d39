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

func TestSplitPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, routeKey, stage string
		prefix, path               string
	}{
		{"default stage", "/tasks/01J", "GET /tasks/{id}", "$default", "", "/tasks/01J"},
		{"named stage", "/prod/tasks/01J", "GET /tasks/{id}", "prod", "/prod", "/tasks/01J"},
		{"custom domain mapping", "/v1/tasks/01J/devices", "GET /tasks/{id}/devices", "prod", "/v1", "/tasks/01J/devices"},
		{"custom domain at the root", "/tasks", "POST /tasks", "prod", "", "/tasks"},
		{"mapping of two levels", "/fleet/v1/tasks", "POST /tasks", "$default", "/fleet/v1", "/tasks"},
		{"stage named like a route", "/tasks/tasks", "GET /tasks", "tasks", "/tasks", "/tasks"},
		{"trailing slash", "/prod/tasks/", "GET /tasks", "prod", "/prod", "/tasks/"},
		{"root route", "/prod", "GET /", "prod", "/prod", "/"},
		{"default route key, named stage", "/prod/tasks", "$default", "prod", "/prod", "/tasks"},
		{"default route key, default stage", "/tasks", "$default", "$default", "", "/tasks"},
		{"greedy route falls back to the stage", "/dev/tasks/x", "ANY /{proxy+}", "dev", "/dev", "/tasks/x"},
		{"route key that does not fit the path", "/prod/other/x", "GET /tasks/{id}", "prod", "/prod", "/other/x"},
		{"empty parameter does not match", "/prod/tasks/", "GET /tasks/{id}", "prod", "/prod", "/tasks/"},
		{"only the stage", "/prod", "$default", "prod", "/prod", "/"},
		{"stage that is only a prefix of a segment", "/production/tasks", "$default", "prod", "", "/production/tasks"},
		{"escaped segment", "/prod/tasks/a%2Fb", "GET /tasks/{id}", "prod", "/prod", "/tasks/a%2Fb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix, path := splitPrefix(tt.raw, tt.routeKey, tt.stage)
			if prefix != tt.prefix || path != tt.path {
				t.Errorf("splitPrefix(%q, %q, %q) = %q, %q; want %q, %q", tt.raw, tt.routeKey, tt.stage, prefix, path, tt.prefix, tt.path)
			}
		})
	}
}

// gatewayEvent is a payload 2.0 event as API Gateway sends it for a named stage with IAM auth.
func gatewayEvent() events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       "GET /tasks/{id}/devices",
		RawPath:        "/prod/tasks/01JD/devices",
		RawQueryString: "status=failed&status=timed_out&limit=2",
		Cookies:        []string{"a=1", "b=2"},
		Headers: map[string]string{
			"host":              "abc123.execute-api.eu-west-1.amazonaws.com",
			"if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT",
			"prefer":            "wait=5, respond-async",
			"x-forwarded-proto": "https",
			"content-length":    "999",
		},
		QueryStringParameters: map[string]string{"status": "failed,timed_out", "limit": "2"},
		PathParameters:        map[string]string{"id": "01JD"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:   "GET /tasks/{id}/devices",
			Stage:      "prod",
			DomainName: "abc123.execute-api.eu-west-1.amazonaws.com",
			RequestID:  "JKJaXmPLvHcESHA=",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: "GET", Path: "/prod/tasks/01JD/devices", Protocol: "HTTP/1.1", SourceIP: "192.0.2.1",
			},
			Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
					UserARN: "arn:aws:iam::123456789012:user/alice", AccountID: "123456789012",
				},
			},
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
		{"query", r.URL.RawQuery, "status=failed&status=timed_out&limit=2"},
		{"request URI", r.RequestURI, "/tasks/01JD/devices?status=failed&status=timed_out&limit=2"},
		{"host", r.Host, "abc123.execute-api.eu-west-1.amazonaws.com"},
		{"remote address", r.RemoteAddr, "192.0.2.1"},
		{"a date keeps its comma", r.Header.Get("If-Modified-Since"), "Wed, 21 Oct 2015 07:28:00 GMT"},
		{"a list stays one line", r.Header.Get("Prefer"), "wait=5, respond-async"},
		{"cookies", r.Header.Get("Cookie"), "a=1; b=2"},
		{"no stale Content-Length", r.Header.Get("Content-Length"), ""},
		{"base URL", BaseURL(r), "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if got := r.URL.Query()["status"]; len(got) != 2 {
		t.Errorf("repeated query parameter = %v, want both values", got)
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
			ev.RouteKey, ev.RawPath, ev.RequestContext.HTTP.Method = "POST /tasks", "/prod/tasks", "POST"
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
	// A hand-written event (sam local, a test) may lack rawPath, rawQueryString and the host.
	ev := events.APIGatewayV2HTTPRequest{
		RouteKey:              "GET /tasks",
		QueryStringParameters: map[string]string{"status": "running", "limit": "5"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			Stage: "$default", DomainName: "api.example.com",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "get", Path: "/tasks"},
		},
	}
	r, err := NewRequest(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.URL.Path != "/tasks" || r.URL.RawQuery != "limit=5&status=running" || r.Host != "api.example.com" {
		t.Errorf("got %s %s?%s host %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Host)
	}
	if got := BaseURL(r); got != "https://api.example.com" {
		t.Errorf("BaseURL = %q", got)
	}
	// A path that starts with two slashes is a path, not a host.
	ev.RouteKey, ev.RawPath = "$default", "//tasks"
	if r, err = NewRequest(context.Background(), ev); err != nil || r.URL.Path != "//tasks" {
		t.Errorf("//tasks gave %v, %v", r.URL, err)
	}
}

func TestOwner(t *testing.T) {
	t.Parallel()
	iam := &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{UserARN: "arn:aws:sts::123456789012:assumed-role/ops/bob"}}
	jwt := &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": "user-42", "iss": "https://issuer"}}}
	tests := []struct {
		name       string
		authorizer *events.APIGatewayV2HTTPRequestContextAuthorizerDescription
		want       string
	}{
		{"IAM", iam, "arn:aws:sts::123456789012:assumed-role/ops/bob"},
		{"JWT", jwt, "user-42"},
		{"no authorizer", nil, ""},
		{"IAM without an ARN", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{}}, ""},
		{"JWT without a subject", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"iss": "x"}}}, ""},
		{"Lambda authorizer", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			Lambda: map[string]any{"owner": "mallory"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := gatewayEvent()
			ev.RequestContext.Authorizer = tt.authorizer
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

func TestBaseURLComesFromTheRequestContext(t *testing.T) {
	t.Parallel()
	// What the caller sends in Host and X-Forwarded-* reaches the function as it was sent.
	ev := events.APIGatewayV2HTTPRequest{
		RouteKey: "POST /tasks", RawPath: "/prod/tasks",
		Headers: map[string]string{"host": "evil.example", "x-forwarded-proto": "http", "x-forwarded-host": "evil.example"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			Stage: "prod", DomainName: "abc123.execute-api.eu-west-1.amazonaws.com",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST", Path: "/prod/tasks"},
		},
	}
	r, err := NewRequest(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := BaseURL(r), "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"; got != want {
		t.Errorf("BaseURL = %q, want %q", got, want)
	}
}
