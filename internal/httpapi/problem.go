package httpapi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// kind is how one domain error code is answered.
type kind struct {
	status int
	typ    string
	// retry says the caller may try again later; the answer carries Retry-After.
	retry bool
}

// codes is the one place where domain error codes become HTTP statuses and problem types.
var codes = map[task.Code]kind{
	task.CodeInvalid:             {http.StatusUnprocessableEntity, api.ProblemValidation, false},
	task.CodeInvalidQuery:        {http.StatusBadRequest, api.ProblemMalformed, false},
	task.CodeNotFound:            {http.StatusNotFound, api.ProblemNotFound, false},
	task.CodeConflict:            {http.StatusConflict, api.ProblemConflict, false},
	task.CodeIdempotencyMismatch: {http.StatusUnprocessableEntity, api.ProblemIdempotencyMismatch, false},
	task.CodeInProgress:          {http.StatusConflict, api.ProblemInProgress, true},
	task.CodeNotFinished:         {http.StatusConflict, api.ProblemNotFinished, true},
	task.CodeUnavailable:         {http.StatusServiceUnavailable, api.ProblemUnavailable, true},
	task.CodeInternal:            {http.StatusInternalServerError, api.ProblemInternal, false},
}

// titles are the short, fixed summaries of each problem type (RFC 9457 "title").
var titles = map[string]string{
	api.ProblemValidation:          "The request has invalid fields",
	api.ProblemMalformed:           "The request is malformed",
	api.ProblemNotFound:            "Not found",
	api.ProblemConflict:            "The task's state does not allow this",
	api.ProblemNotFinished:         "The task has not finished",
	api.ProblemIdempotencyMismatch: "The Idempotency-Key was used with a different request",
	api.ProblemInProgress:          "A request with this Idempotency-Key is still in progress",
	api.ProblemUnsupportedMedia:    "Unsupported media type",
	api.ProblemTooLarge:            "The request body is too large",
	api.ProblemTimeout:             "The request body did not arrive in time",
	api.ProblemUnauthorized:        "Unauthorized",
	api.ProblemMethodNotAllowed:    "Method not allowed",
	api.ProblemUnavailable:         "Service unavailable",
	api.ProblemInternal:            "Internal error",
}

// problemFor builds a problem of type typ.
func problemFor(status int, typ, detail string) api.Problem {
	return api.Problem{Type: typ, Title: titles[typ], Status: status, Detail: detail}
}

// error answers err as a problem. A *task.Error's message and fields are meant for the caller
// and are shown; anything else is an internal error: it is logged, and the caller learns only
// its request id.
func (h *handler) error(w http.ResponseWriter, r *http.Request, err error) {
	code := task.ErrorCode(err)
	k, ok := codes[code]
	if !ok {
		code, k = task.CodeInternal, codes[task.CodeInternal]
	}
	p := problemFor(k.status, k.typ, "")
	var te *task.Error
	if code != task.CodeInternal && errors.As(err, &te) {
		p.Detail = te.Message
		p.TaskStatus = string(te.Status)
		p.DeviceStatus = string(te.DeviceStatus)
		for _, f := range te.Fields {
			p.Errors = append(p.Errors, api.FieldError{Pointer: f.Pointer, Detail: f.Detail})
		}
	}
	if k.status >= http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "request failed", "request_id", requestID(r),
			"method", r.Method, "path", r.URL.Path, "err", err)
	}
	if k.retry {
		w.Header().Set("Retry-After", h.retryAfter)
	}
	h.problem(w, r, p)
}

// problem writes p as application/problem+json, with the request id.
func (h *handler) problem(w http.ResponseWriter, r *http.Request, p api.Problem) {
	p.RequestID = requestID(r)
	if p.Detail == "" {
		p.Detail = "something went wrong; quote the request id when reporting it"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if bodyUnread(r) {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", api.MediaProblem)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON writes v as the JSON body of a response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", api.MediaJSON)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

const headerRequestID = api.HeaderRequestID

type requestIDKey struct{}

// validRequestID reports whether a client's X-Request-Id is safe to keep: it is echoed in
// headers and logs, so only a short token of plain characters is: ^[A-Za-z0-9._-]{1,128}$,
// checked by hand on every request.
func validRequestID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newRequestID returns a fresh random request id.
func newRequestID() string { return rand.Text() }

// requestID returns the id ServeHTTP gave the request.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}
