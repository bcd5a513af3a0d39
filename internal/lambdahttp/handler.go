package lambdahttp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/api"
)

// DefaultReserve is how long before the function's deadline a request's context ends when
// Options.Reserve is zero: enough to encode and return the answer.
const DefaultReserve = 1500 * time.Millisecond

// Options tune Handler. The zero value is usable.
type Options struct {
	// Reserve is how long before the function's deadline the request's context ends, so that a
	// handler still waiting (a long-poll, an event stream) returns while the answer can still
	// be sent.
	Reserve time.Duration
	Logger  *slog.Logger
}

// Handler returns a Lambda handler for HTTP API payload 2.0 events that serves them with h.
// The Lambda function never returns an error for a request: an event that cannot be turned
// into a request is a 400 problem, a handler that panics is a 500 problem, and a handler that
// ran out of time without answering is a 503 problem, so API Gateway always relays an answer
// in the API's own format.
func Handler(h http.Handler, opts Options) func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if opts.Reserve <= 0 {
		opts.Reserve = DefaultReserve
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		var cancel context.CancelFunc
		if deadline, ok := ctx.Deadline(); ok {
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-opts.Reserve))
		} else {
			ctx, cancel = context.WithCancel(ctx)
		}
		defer cancel()
		r, err := NewRequest(ctx, ev)
		if err != nil {
			log.WarnContext(ctx, "malformed gateway event", "gateway_request_id", ev.RequestContext.RequestID, "err", err)
			return problem(ev, http.StatusBadRequest, api.ProblemMalformed, "the request could not be read: "+err.Error()), nil
		}
		w := newResponseWriter(cancel)
		if !serve(h, w, r, log) {
			return problem(ev, http.StatusInternalServerError, api.ProblemInternal, ""), nil
		}
		if !w.written() && ctx.Err() != nil {
			log.WarnContext(ctx, "request ran out of time without an answer", "gateway_request_id", ev.RequestContext.RequestID,
				"method", r.Method, "path", r.URL.Path)
			resp := problem(ev, http.StatusServiceUnavailable, api.ProblemUnavailable, "the request took too long; try again")
			resp.Headers["Retry-After"] = "1"
			return resp, nil
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

// problem is an application/problem+json answer made here, for the few cases where the
// handler could not answer itself. Its request id is API Gateway's, which its access log keeps.
func problem(ev events.APIGatewayV2HTTPRequest, status int, typ, detail string) events.APIGatewayV2HTTPResponse {
	id := ev.RequestContext.RequestID
	if id == "" {
		id = rand.Text()
	}
	body, _ := json.Marshal(api.Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail, RequestID: id})
	return events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": api.MediaProblem, api.HeaderRequestID: id},
		Body:       string(body),
		Cookies:    []string{},
	}
}
