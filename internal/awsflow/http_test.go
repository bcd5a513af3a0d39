package awsflow

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/internal/awsapp"
)

// apiCaller is the app's REST API as API Gateway hands requests to the functions: proxy
// events (payload 1.0) of the resource the path matches, the caller identified by IAM as owner.
type apiCaller struct {
	t       *testing.T
	handler func(context.Context, events.APIGatewayProxyRequest) (any, error)
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

// callCtx sends one request within ctx, whose deadline is the function's, and reads a
// streamed answer to its end.
func (c *apiCaller) callCtx(ctx context.Context, method, target, body string, header ...string) answer {
	c.t.Helper()
	out := c.invoke(ctx, method, target, body, header...)
	switch resp := out.(type) {
	case events.APIGatewayProxyResponse:
		return answer{status: resp.StatusCode, header: resp.Headers, body: resp.Body}
	case *events.APIGatewayProxyStreamingResponse:
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			c.t.Fatalf("%s %s: read the stream: %v", method, target, err)
		}
		return answer{status: resp.StatusCode, header: resp.Headers, body: string(b)}
	default:
		c.t.Fatalf("%s %s: the handler answered with %T", method, target, out)
		return answer{}
	}
}

// stream sends one request to a streamed route and returns its answer as the function streams
// it: status and headers, then the body as it is written.
func (c *apiCaller) stream(ctx context.Context, method, target string) *events.APIGatewayProxyStreamingResponse {
	c.t.Helper()
	out := c.invoke(ctx, method, target, "")
	resp, ok := out.(*events.APIGatewayProxyStreamingResponse)
	if !ok {
		c.t.Fatalf("%s %s: the handler answered with %T, not a stream", method, target, out)
	}
	return resp
}

func (c *apiCaller) invoke(ctx context.Context, method, target, body string, header ...string) any {
	c.t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		c.t.Fatal(err)
	}
	path := strings.TrimPrefix(u.Path, "/v1")
	headers := map[string]string{"Content-Type": "application/json", "Host": "api.example.com"}
	for i := 0; i+1 < len(header); i += 2 {
		headers[header[i]] = header[i+1]
	}
	ev := events.APIGatewayProxyRequest{Resource: resourceOf(path), Path: path, HTTPMethod: method, Body: body,
		Headers: headers, MultiValueQueryStringParameters: u.Query(),
		RequestContext: events.APIGatewayProxyRequestContext{DomainName: "api.example.com", Stage: "v1", RequestID: "test",
			Path: "/v1" + path, HTTPMethod: method, Identity: events.APIGatewayRequestIdentity{UserArn: owner}}}
	out, err := c.handler(ctx, ev)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	return out
}

// resourceOf is the API resource (template.yaml's event paths) that path matches.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	names := []string{"", "{id}", "", "{deviceId}", ""}
	for i := range parts {
		if i < len(names) && names[i] != "" {
			parts[i] = names[i]
		}
	}
	return "/" + strings.Join(parts, "/")
}

func (c *apiCaller) must(want int, method, target, body string, header ...string) answer {
	c.t.Helper()
	a := c.call(method, target, body, header...)
	if a.status != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, target, a.status, a.body, want)
	}
	return a
}
