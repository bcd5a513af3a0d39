package lambdahttp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/api"
)

func TestResponse(t *testing.T) {
	t.Parallel()
	binary := []byte{0x1f, 0x8b, 0x08, 0x00, 0xff}
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		status      int
		body        string
		base64      bool
		headers     map[string]string
		cookies     []string
		contentType string
	}{
		{
			name: "json",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, `{"id":"01JD"}`)
			},
			status: 202, body: `{"id":"01JD"}`, contentType: "application/json",
		},
		{
			name: "problem json is text",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"status":404}`)
			},
			status: 404, body: `{"status":404}`, contentType: "application/problem+json",
		},
		{
			name: "binary is base64",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/gzip")
				w.Write(binary)
			},
			status: 200, body: base64.StdEncoding.EncodeToString(binary), base64: true, contentType: "application/gzip",
		},
		{
			name: "invalid UTF-8 in text is base64",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte{'o', 'k', 0xff})
			},
			status: 200, body: base64.StdEncoding.EncodeToString([]byte{'o', 'k', 0xff}), base64: true, contentType: "text/plain",
		},
		{
			name: "large text that escapes to more than base64 is base64",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				io.WriteString(w, strings.Repeat("<>\n", 30000))
			},
			status: 200, body: base64.StdEncoding.EncodeToString([]byte(strings.Repeat("<>\n", 30000))), base64: true,
			contentType: "text/plain; charset=utf-8",
		},
		{
			name: "large plain text stays text",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				io.WriteString(w, strings.Repeat("a line of output\n", 10000))
			},
			status: 200, body: strings.Repeat("a line of output\n", 10000), contentType: "text/plain; charset=utf-8",
		},
		{
			name: "small text stays text however it escapes",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "<<>>\n\n")
			},
			status: 200, body: "<<>>\n\n", contentType: "text/plain",
		},
		{
			name: "sniffed content type",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "hello")
			},
			status: 200, body: "hello", contentType: "text/plain; charset=utf-8",
		},
		{
			name: "multi-value headers and cookies",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Add("Vary", "Accept")
				w.Header().Add("Vary", "Prefer")
				w.Header().Add("Set-Cookie", "a=1; Path=/")
				w.Header().Add("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT")
				w.WriteHeader(http.StatusNoContent)
			},
			status: 204, headers: map[string]string{"Vary": "Accept, Prefer"},
			cookies: []string{"a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT"},
		},
		{
			name:    "nothing written is 200",
			handler: func(w http.ResponseWriter, r *http.Request) {},
			status:  200,
		},
		{
			name: "first status wins and 1xx is dropped",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusContinue)
				w.WriteHeader(http.StatusConflict)
				w.WriteHeader(http.StatusOK)
			},
			status: 409,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := invokeBuffered(t, Handler(tt.handler, Options{}), context.Background(), gatewayEvent())
			if resp.StatusCode != tt.status || resp.Body != tt.body || resp.IsBase64Encoded != tt.base64 {
				t.Errorf("got %d %q base64=%v; want %d %q base64=%v", resp.StatusCode, resp.Body, resp.IsBase64Encoded, tt.status, tt.body, tt.base64)
			}
			if got := resp.Headers["Content-Type"]; got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			for k, v := range tt.headers {
				if resp.Headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, resp.Headers[k], v)
				}
			}
			if _, ok := resp.Headers["Set-Cookie"]; ok {
				t.Error("Set-Cookie was joined into one header line")
			}
			if cookies := resp.MultiValueHeaders["Set-Cookie"]; !slices.Equal(cookies, tt.cookies) && len(cookies)+len(tt.cookies) > 0 {
				t.Errorf("cookies = %q, want %q", cookies, tt.cookies)
			}
		})
	}
}

// routes is a small API shaped like httpapi: path values from the mux, Location from BaseURL.
func routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tasks", func(w http.ResponseWriter, r *http.Request) {
		owner, err := Owner(r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Location", BaseURL(r)+"/tasks/01JD")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]string{"owner": owner, "got": string(body)})
	})
	mux.HandleFunc("GET /tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "self": BaseURL(r) + r.URL.Path})
	})
	return mux
}

func TestHandlerRoutesBehindStagesAndDomains(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, domain, path, fullPath, wantLocation string
	}{
		{"execute-api endpoint", "abc.execute-api.us-east-1.amazonaws.com", "/tasks", "/v1/tasks",
			"https://abc.execute-api.us-east-1.amazonaws.com/v1/tasks/01JD"},
		{"custom domain with a base path", "fleet.example.com", "/tasks", "/fleet/tasks", "https://fleet.example.com/fleet/tasks/01JD"},
		{"custom domain at the root", "fleet.example.com", "/tasks", "/tasks", "https://fleet.example.com/tasks/01JD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := gatewayEvent()
			ev.Resource, ev.Path, ev.HTTPMethod = "/tasks", tt.path, "POST"
			ev.RequestContext.Path, ev.RequestContext.DomainName = tt.fullPath, tt.domain
			ev.Headers["Host"], ev.MultiValueHeaders["Host"] = tt.domain, []string{tt.domain}
			ev.Body = base64.StdEncoding.EncodeToString([]byte(`{"deviceIds":["i-1"]}`))
			ev.IsBase64Encoded = true
			resp := invokeBuffered(t, Handler(routes(), Options{}), context.Background(), ev)
			if resp.StatusCode != http.StatusAccepted || resp.Headers["Location"] != tt.wantLocation {
				t.Fatalf("got %d Location %q; want 202 %q (body %s)", resp.StatusCode, resp.Headers["Location"], tt.wantLocation, resp.Body)
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
				t.Fatal(err)
			}
			if got["owner"] != "arn:aws:iam::123456789012:user/alice" || got["got"] != `{"deviceIds":["i-1"]}` {
				t.Errorf("handler saw %v", got)
			}
		})
	}
}

func TestHandlerPathParameters(t *testing.T) {
	t.Parallel()
	ev := gatewayEvent()
	ev.Resource, ev.Path, ev.RequestContext.Path = "/tasks/{id}", "/tasks/01JDXYZ", "/v1/tasks/01JDXYZ"
	ev.QueryStringParameters, ev.MultiValueQueryStringParameters = nil, nil
	resp := invokeBuffered(t, Handler(routes(), Options{}), context.Background(), ev)
	var got map[string]string
	if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
		t.Fatalf("%v: %s", err, resp.Body)
	}
	want := "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/tasks/01JDXYZ"
	if got["id"] != "01JDXYZ" || got["self"] != want {
		t.Errorf("got %v, want id 01JDXYZ and self %s", got, want)
	}
}

// invokeBuffered calls the Lambda handler and returns its buffered response.
func invokeBuffered(t *testing.T, fn func(context.Context, events.APIGatewayProxyRequest) (any, error), ctx context.Context,
	ev events.APIGatewayProxyRequest) events.APIGatewayProxyResponse {
	t.Helper()
	out, err := fn(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	resp, ok := out.(events.APIGatewayProxyResponse)
	if !ok {
		t.Fatalf("the handler answered a buffered route with %T", out)
	}
	return resp
}

func TestHandlerEndsAStreamAtTheFirstFlush(t *testing.T) {
	t.Parallel()
	// An event stream writes, flushes and waits for the next change; behind API Gateway the
	// first flush with data must end the response instead of waiting until the deadline.
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil { // headers only: must not end anything
			t.Errorf("Flush: %v", err)
		}
		for i := 1; ; i++ {
			fmt.Fprintf(w, "id: %d\ndata: {}\n\n", i)
			if err := rc.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Minute):
				t.Error("the request went on after a flush with data")
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := invokeBuffered(t, Handler(stream, Options{}), ctx, gatewayEvent())
	if resp.StatusCode != 200 || resp.Body != "id: 1\ndata: {}\n\n" || resp.Headers["Content-Type"] != "text/event-stream" {
		t.Errorf("got %d %q %v", resp.StatusCode, resp.Body, resp.Headers)
	}
}

func TestHandlerAnswersBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	// A handler that waits for its context and then gives up without writing, as a long-poll
	// does when the client goes away.
	var deadline time.Time
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, _ = r.Context().Deadline()
		<-r.Context().Done()
	})
	lambdaDeadline := time.Now().Add(2 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), lambdaDeadline)
	defer cancel()
	resp := invokeBuffered(t, Handler(slow, Options{Reserve: 1500 * time.Millisecond}), ctx, gatewayEvent())
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Headers["Retry-After"] != "1" {
		t.Errorf("got %d %v", resp.StatusCode, resp.Headers)
	}
	if want := lambdaDeadline.Add(-1500 * time.Millisecond); !deadline.Equal(want) {
		t.Errorf("request deadline %v, want %v", deadline, want)
	}
	if ctx.Err() != nil {
		t.Error("the handler returned only when the function's own deadline had passed")
	}
	var p api.Problem
	if err := json.Unmarshal([]byte(resp.Body), &p); err != nil || p.Type != api.ProblemUnavailable || p.RequestID != "JKJaXmPLvHcESHA=" {
		t.Errorf("problem = %+v, %v", p, err)
	}
}

func TestHandlerProblems(t *testing.T) {
	t.Parallel()
	bad := gatewayEvent()
	bad.Body, bad.IsBase64Encoded = "%%%", true
	tests := []struct {
		name    string
		handler http.Handler
		ev      events.APIGatewayProxyRequest
		status  int
		typ     string
	}{
		{"malformed event", routes(), bad, http.StatusBadRequest, api.ProblemMalformed},
		{"panic", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), gatewayEvent(),
			http.StatusInternalServerError, api.ProblemInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := invokeBuffered(t, Handler(tt.handler, Options{}), context.Background(), tt.ev)
			var p api.Problem
			if err := json.Unmarshal([]byte(resp.Body), &p); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || p.Type != tt.typ || p.Status != tt.status ||
				resp.Headers["Content-Type"] != api.MediaProblem || resp.Headers[api.HeaderRequestID] == "" {
				t.Errorf("got %d %+v %v", resp.StatusCode, p, resp.Headers)
			}
		})
	}
}

func TestJSONStringLenIsWhatEncodingJSONWrites(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\n\r\t\x00\x1f\x7f", "<a href=\"x&y\">", "é€😀", "\u2028\u2029", "mixed\x01é<"} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := jsonStringLen([]byte(s)), len(b)-2; got != want {
			t.Errorf("jsonStringLen(%q) = %d, encoding/json writes %d", s, got, want)
		}
	}
}
