package awsflow

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/internal/awsapp"
)

// apiCaller is the app's HTTP API as API Gateway hands requests to the functions: payload 2.0
// events, the caller identified by IAM as owner.
type apiCaller struct {
	t       *testing.T
	handler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)
}

func (f *flow) api(t *testing.T, app *awsapp.App) *apiCaller {
	return &apiCaller{t: t, handler: app.HTTP()}
}

// answer is one response of the API.
type answer struct {
	status int
	header map[string]string
	body   string
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("decode %d answer %q: %v", a.status, a.body, err)
	}
}

// call sends one request; header is name, value pairs.
func (c *apiCaller) call(method, target, body string, header ...string) answer {
	c.t.Helper()
	return c.callCtx(context.Background(), method, target, body, header...)
}

// callCtx sends one request within ctx, whose deadline is the function's.
func (c *apiCaller) callCtx(ctx context.Context, method, target, body string, header ...string) answer {
	c.t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		c.t.Fatal(err)
	}
	path := u.Path
	if u.Host != "" {
		path = strings.TrimPrefix(target, u.Scheme+"://"+u.Host)
		path, _, _ = strings.Cut(path, "?")
	}
	headers := map[string]string{"content-type": "application/json", "host": "api.example.com"}
	for i := 0; i+1 < len(header); i += 2 {
		headers[strings.ToLower(header[i])] = header[i+1]
	}
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: path, RawQueryString: u.RawQuery, Headers: headers, Body: body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			DomainName: "api.example.com", RequestID: "test",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path, Protocol: "HTTP/1.1"},
			Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{UserARN: owner}},
		},
	}
	resp, err := c.handler(ctx, ev)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	return answer{status: resp.StatusCode, header: resp.Headers, body: resp.Body}
}

func (c *apiCaller) must(want int, method, target, body string, header ...string) answer {
	c.t.Helper()
	a := c.call(method, target, body, header...)
	if a.status != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, target, a.status, a.body, want)
	}
	return a
}
