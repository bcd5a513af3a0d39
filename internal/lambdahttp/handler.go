package lambdahttp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/api"
)

// DefaultReserve is how long before its deadline a request's context ends when
// Options.Reserve is zero: enough to encode and return the answer.
const DefaultReserve = 1500 * time.Millisecond

// Limits API Gateway puts on a REST API's Lambda integrations.
const (
	// BufferedLimit is how long API Gateway waits for a buffered integration's answer.
	BufferedLimit = 29 * time.Second
	// StreamLimit is how long API Gateway keeps a streamed response open.
	StreamLimit = 15 * time.Minute
)

// Options tune Handler. The zero value is usable.
type Options struct {
	// Reserve is how long before a request's deadline (the function's own, or API Gateway's
	// limit, whichever comes first) the request's context ends, so that a handler still waiting
	// (a long-poll, an event stream) returns while the answer can still be sent.
	Reserve time.Duration
	// Streamed names the resources, as the API defines them ("/tasks/{id}/events"), whose GET
	// integration streams the response (ResponseTransferMode RESPONSE_STREAM). Their requests
	// run for up to StreamLimit and their answers go out as they are written; every other
	// request is answered whole within BufferedLimit.
	Streamed []string
	Logger   *slog.Logger
}

// Handler returns a Lambda handler for REST API proxy events (payload format 1.0) that serves
// them with h. Its result is an events.APIGatewayProxyResponse for a buffered route and an
// *events.APIGatewayProxyStreamingResponse (aws-lambda-go writes its JSON prelude, eight NUL
// bytes and then the body as h writes it) for a streamed one.
//
// The function never returns an error for a request: an event that cannot be turned into a
// request is a 400 problem, a handler that panics is a 500 problem, and a handler that ran
// out of time without answering is a 503 problem, so API Gateway always relays an answer in
// the API's own format.
func Handler(h http.Handler, opts Options) func(context.Context, events.APIGatewayProxyRequest) (any, error) {
	if opts.Reserve <= 0 {
		opts.Reserve = DefaultReserve
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, ev events.APIGatewayProxyRequest) (any, error) {
		streamed := ev.HTTPMethod == http.MethodGet && slices.Contains(opts.Streamed, ev.Resource)
		limit := BufferedLimit
		if streamed {
			limit = StreamLimit
		}
		deadline := time.Now().Add(limit)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		ctx, cancel := context.WithDeadline(ctx, deadline.Add(-opts.Reserve))
		r, err := NewRequest(ctx, ev)
		if err != nil {
			cancel()
			log.WarnContext(ctx, "malformed gateway event", "gateway_request_id", ev.RequestContext.RequestID, "err", err)
			return buffered(problem(ev, http.StatusBadRequest, api.ProblemMalformed, "the request could not be read: "+err.Error())), nil
		}
		if streamed {
			return stream(ctx, cancel, h, ev, r, log), nil
		}
		defer cancel()
		w := newResponseWriter(cancel)
		if !serve(h, w, r, log) {
			return buffered(problem(ev, http.StatusInternalServerError, api.ProblemInternal, "")), nil
		}
		if !w.written() && ctx.Err() != nil {
			return buffered(late(ctx, ev, r, log)), nil
		}
		return w.response(), nil
	}
}

// serve runs h, reporting false when it panicked.
func serve(h http.Handler, w http.ResponseWriter, r *http.Request, log *slog.Logger) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			log.ErrorContext(r.Context(), "handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			ok = false
		}
	}()
	h.ServeHTTP(w, r)
	return true
}

// answer is a response made here rather than by the handler.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// problem is an application/problem+json answer made here, for the few cases where the
// handler could not answer itself. Its request id is API Gateway's, which its access log keeps.
func problem(ev events.APIGatewayProxyRequest, status int, typ, detail string) answer {
	id := ev.RequestContext.RequestID
	if id == "" {
		id = rand.Text()
	}
	body, _ := json.Marshal(api.Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail, RequestID: id})
	return answer{status: status, body: body,
		header: http.Header{"Content-Type": {api.MediaProblem}, api.HeaderRequestID: {id}}}
}

// late is the answer of a request that ran out of time without one.
func late(ctx context.Context, ev events.APIGatewayProxyRequest, r *http.Request, log *slog.Logger) answer {
	log.WarnContext(ctx, "request ran out of time without an answer", "gateway_request_id", ev.RequestContext.RequestID,
		"method", r.Method, "path", r.URL.Path)
	a := problem(ev, http.StatusServiceUnavailable, api.ProblemUnavailable, "the request took too long; try again")
	a.header.Set("Retry-After", "1")
	return a
}

// buffered turns an answer into a buffered response.
func buffered(a answer) events.APIGatewayProxyResponse {
	resp := events.APIGatewayProxyResponse{StatusCode: a.status, Body: string(a.body)}
	resp.Headers, resp.MultiValueHeaders = gatewayHeaders(a.header)
	return resp
}
