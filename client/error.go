package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

// Error is an error response from the API: the RFC 9457 problem details the server sent, or,
// when something in front of the server (a proxy, API Gateway) answered without them, what
// could be learnt from the status line and body.
type Error struct {
	// Type is the problem type URN, one of the api.Problem* constants; empty when the response
	// was not a problem document.
	Type   string
	Title  string
	Status int
	Detail string
	// Instance identifies this occurrence of the problem, when the server says.
	Instance string
	// Errors lists the bad fields of a validation problem.
	Errors []api.FieldError
	// TaskStatus is the task's current status on conflicts: cancel of a finished task, result
	// of an unfinished one.
	TaskStatus string
	// DeviceStatus is the device's current status on conflicts about one device: cancel of a
	// device that has ended.
	DeviceStatus string
	// RequestID is the server's id for the failed request, for support and logs.
	RequestID string
	// RetryAfter is the server's Retry-After, zero when it sent none.
	RetryAfter time.Duration
}

// Error formats the problem on one line: status, title and detail.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleetrun: %d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	for _, f := range e.Errors {
		fmt.Fprintf(&b, "; %s: %s", f.Pointer, f.Detail)
	}
	return b.String()
}

// Problem returns e as the API's problem document.
func (e *Error) Problem() api.Problem {
	return api.Problem{Type: e.Type, Title: e.Title, Status: e.Status, Detail: e.Detail,
		Instance: e.Instance, Errors: e.Errors, TaskStatus: e.TaskStatus, DeviceStatus: e.DeviceStatus,
		RequestID: e.RequestID}
}

// AsError returns the *Error in err's chain, if there is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsNotFound reports whether err says the task (or device) does not exist, or belongs to
// another caller.
func IsNotFound(err error) bool {
	e, ok := AsError(err)
	return ok && (e.Type == api.ProblemNotFound || e.Type == "" && e.Status == http.StatusNotFound)
}

// IsConflict reports whether err says the task's state forbids the call, as when cancelling a
// finished task; Error.TaskStatus holds the state.
func IsConflict(err error) bool {
	e, ok := AsError(err)
	return ok && (e.Type == api.ProblemConflict || e.Type == "" && e.Status == http.StatusConflict)
}

// IsNotFinished reports whether err says a task's result was asked for before it finished.
func IsNotFinished(err error) bool {
	e, ok := AsError(err)
	return ok && e.Type == api.ProblemNotFinished
}

// IsValidation reports whether err says the request was invalid; Error.Errors names the fields.
func IsValidation(err error) bool {
	e, ok := AsError(err)
	return ok && e.Type == api.ProblemValidation
}

// maxErrorBody bounds how much of an error response is read, so a misbehaving proxy cannot make
// the client buffer a page of HTML without end.
const maxErrorBody = 64 << 10

// readError turns an error response into an *Error and closes its body.
func readError(resp *http.Response, now time.Time) *Error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode, RequestID: resp.Header.Get(api.HeaderRequestID),
		RetryAfter: retryAfter(resp.Header, now)}
	media, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p api.Problem
	if (media == api.MediaProblem || media == api.MediaJSON) && json.Unmarshal(body, &p) == nil && p.Title != "" {
		e.Type, e.Title, e.Detail, e.Instance = p.Type, p.Title, p.Detail, p.Instance
		e.Errors, e.TaskStatus, e.DeviceStatus = p.Errors, p.TaskStatus, p.DeviceStatus
		if p.Status != 0 {
			e.Status = p.Status
		}
		if p.RequestID != "" && e.RequestID == "" {
			e.RequestID = p.RequestID
		}
		return e
	}
	e.Title = http.StatusText(resp.StatusCode)
	if e.Title == "" {
		e.Title = resp.Status
	}
	// API Gateway answers its own errors (authorization, throttling) with {"message": "..."}.
	var gw struct {
		Message string `json:"message"`
	}
	if media == api.MediaJSON && json.Unmarshal(body, &gw) == nil && gw.Message != "" {
		e.Detail = gw.Message
	} else if media == "text/plain" {
		e.Detail = strings.TrimSpace(string(body))
	}
	return e
}
