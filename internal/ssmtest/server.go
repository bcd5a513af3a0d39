// Package ssmtest is a wire-level SSM Run Command server for tests. It speaks the awsJson1.1
// protocol (POST /, X-Amz-Target: AmazonSSM.<Operation>) well enough for the real
// aws-sdk-go-v2 SSM client, pointed at it through the client's BaseEndpoint or the
// AWS_ENDPOINT_URL_SSM variable, and covers what moto lacks: ListCommandInvocations,
// CancelCommand, and devices that are slow, fail, time out or cannot be reached.
//
// Operations: SendCommand, ListCommands, ListCommandInvocations, GetCommandInvocation and
// CancelCommand; for the managed nodes a task may target, DescribeInstanceInformation (with
// its tag filters) and ListTagsForResource (see AddNodes). Each device follows a Script; faults (throttling, a 500 after the work was
// done) are injected per operation, and every call is counted.
package ssmtest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Region and Account are what the server reports in events and ARNs.
const (
	Region  = "us-east-1"
	Account = "123456789012"
)

// RemoteScriptDocument is the AWS-managed document that downloads a script and runs it.
const RemoteScriptDocument = "AWS-RunRemoteScript"

// Operations the server speaks.
const (
	OpSendCommand            = "SendCommand"
	OpListCommands           = "ListCommands"
	OpListCommandInvocations = "ListCommandInvocations"
	OpGetCommandInvocation   = "GetCommandInvocation"
	OpCancelCommand          = "CancelCommand"
)

// Server is a running SSM test server. It is safe for concurrent use.
type Server struct {
	// URL is the server's base URL (http://127.0.0.1:port), to be used as the SSM endpoint.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	now      func() time.Time
	scripts  map[string]Script
	fallback Script
	commands []*command
	byID     map[string]*command
	calls    map[string]int
	faults   map[string][]fault
	outages  map[string]outage
	events   []json.RawMessage
	cancels  []CancelRequest
	nodes    []Node
	seq      int

	// writeOutput receives the output uploads; uploads waits for them (see SetOutputWriter).
	writeOutput func(ctx context.Context, bucket, key string, body []byte) error
	uploads     []upload
	uploadErrs  []error
}

// upload is one object the agent writes to the command's output bucket.
type upload struct {
	bucket, key string
	body        []byte
}

// CancelRequest is a CancelCommand the server accepted, as it was sent.
type CancelRequest struct {
	CommandID string
	// InstanceIDs are the instances the request named; none means the whole command.
	InstanceIDs []string
}

// Cancels returns every CancelCommand the server accepted, in the order received.
func (s *Server) Cancels() []CancelRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CancelRequest, len(s.cancels))
	for i, c := range s.cancels {
		out[i] = CancelRequest{CommandID: c.CommandID, InstanceIDs: append([]string(nil), c.InstanceIDs...)}
	}
	return out
}

// fault is one injected failure of the next call to an operation.
type fault struct {
	status int
	code   string
	msg    string
	// accept means the operation is carried out before the error is returned, as when a
	// response is lost after the service did the work.
	accept bool
}

// outage fails every call of an operation until a time on the server's clock.
type outage struct {
	until time.Time
	fault fault
}

// NewServer starts a server on a free loopback port. Close stops it.
func NewServer() *Server {
	s := &Server{
		now:      time.Now,
		scripts:  map[string]Script{},
		fallback: DefaultScript,
		byID:     map[string]*command{},
		calls:    map[string]int{},
		faults:   map[string][]fault{},
		outages:  map[string]outage{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	return s
}

// Start starts a server that is closed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// HTTPClient returns an HTTP client for the server.
func (s *Server) HTTPClient() *http.Client { return s.srv.Client() }

// SetNow replaces the server's clock, which stamps commands and invocations and is what the
// InvokedAfter and InvokedBefore filters compare with.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Script sets how device instanceID behaves in commands sent from now on.
func (s *Server) Script(instanceID string, sc Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[instanceID] = sc
}

// SetDefault sets how devices without a script behave (DefaultScript until changed).
func (s *Server) SetDefault(sc Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fallback = sc
}

// SetOutputWriter makes the server write each finished invocation's output where the agent
// would: to the command's OutputS3BucketName, under the key layout of the agent (see
// invocation.outputKey), one object per stream that is not empty, as the agent skips empty
// ones. write is called outside the server's lock, before the answer to the request that saw
// the invocation finish, just as the agent uploads before it reports the invocation done.
// Errors are kept for UploadErrors.
func (s *Server) SetOutputWriter(write func(ctx context.Context, bucket, key string, body []byte) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeOutput = write
}

// UploadErrors returns the errors SetOutputWriter's function returned so far.
func (s *Server) UploadErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.uploadErrs...)
}

// flushUploads writes the uploads queued so far. The caller does not hold s.mu.
func (s *Server) flushUploads(ctx context.Context) {
	s.mu.Lock()
	queue, write := s.uploads, s.writeOutput
	s.uploads = nil
	s.mu.Unlock()
	if write == nil {
		return
	}
	for _, u := range queue {
		if err := write(ctx, u.bucket, u.key, u.body); err != nil {
			s.mu.Lock()
			s.uploadErrs = append(s.uploadErrs, fmt.Errorf("ssmtest: write s3://%s/%s: %w", u.bucket, u.key, err))
			s.mu.Unlock()
		}
	}
}

// ThrottleNext makes the next n calls of op fail with ThrottlingException (HTTP 400), which
// the SDK's standard retryer retries with backoff.
func (s *Server) ThrottleNext(op string, n int) {
	s.FailNext(op, http.StatusBadRequest, "ThrottlingException", "Rate exceeded", n)
}

// FailAfterAccept makes the next n calls of op do their work (a SendCommand is accepted,
// recorded and runs) and then answer 500 InternalServerError, as when the response to an
// accepted request is lost.
func (s *Server) FailAfterAccept(op string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], fault{status: http.StatusInternalServerError,
			code: "InternalServerError", msg: "An error occurred on the server side.", accept: true})
	}
}

// PassNext lets the next n calls of op through before the faults queued after it, so that a
// fault can hit, say, the second SendCommand: PassNext(op, 1) then FailAfterAccept(op, 1).
func (s *Server) PassNext(op string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], fault{})
	}
}

// FailNext makes the next n calls of op fail with the given HTTP status and error code without
// doing anything.
func (s *Server) FailNext(op string, status int, code, message string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], fault{status: status, code: code, msg: message})
	}
}

// FailUntil makes every call of op fail with the given HTTP status and error code, without
// doing anything, until the server's clock (SetNow) reaches until: an outage of SSM, or a
// permission missing for a while, measured on a clock a test controls.
func (s *Server) FailUntil(op string, until time.Time, status int, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outages[op] = outage{until: until, fault: fault{status: status, code: code, msg: message}}
}

// Calls returns how many requests for op reached the server, failed ones included.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Command is a command the server accepted, as it was sent.
type Command struct {
	CommandID          string
	DocumentName       string
	Comment            string
	InstanceIDs        []string
	Parameters         map[string][]string
	MaxConcurrency     string
	MaxErrors          string
	TimeoutSeconds     int
	OutputS3BucketName string
	OutputS3KeyPrefix  string
	// CloudWatchLogGroup is the log group of the command's output, "" unless CloudWatch
	// output was enabled.
	CloudWatchLogGroup string
	RequestedAt        time.Time
	// Cancelled is true once CancelCommand named the whole command.
	Cancelled bool
}

// Commands returns every accepted command in the order it was sent.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Command, 0, len(s.commands))
	for _, c := range s.commands {
		params := make(map[string][]string, len(c.Parameters))
		for k, v := range c.Parameters {
			params[k] = append([]string(nil), v...)
		}
		out = append(out, Command{CommandID: c.CommandId, DocumentName: c.DocumentName, Comment: c.Comment,
			InstanceIDs: append([]string(nil), c.InstanceIds...), Parameters: params,
			MaxConcurrency: c.MaxConcurrency, MaxErrors: c.MaxErrors, TimeoutSeconds: c.TimeoutSeconds,
			OutputS3BucketName: c.OutputS3BucketName, OutputS3KeyPrefix: c.OutputS3KeyPrefix,
			CloudWatchLogGroup: cloudWatchGroup(c.CloudWatchOutputConfig),
			RequestedAt:        c.requested, Cancelled: c.cancelled})
	}
	return out
}

// InvocationState is the current state of one device's invocation.
type InvocationState struct {
	CommandID     string
	InstanceID    string
	Status        string
	StatusDetails string
	ResponseCode  int
}

// Invocation returns the state of instanceID's invocation of commandID.
func (s *Server) Invocation(commandID, instanceID string) (InvocationState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invocation(commandID, instanceID)
	if inv == nil {
		return InvocationState{}, false
	}
	return InvocationState{CommandID: commandID, InstanceID: instanceID, Status: inv.status,
		StatusDetails: inv.details, ResponseCode: inv.code}, true
}

// Settle moves every invocation that is not finished straight to its scripted outcome, as if
// it had been polled enough; invocations scripted Never stay in progress, Offline ones end only
// once their delivery timeout has passed, and cancelled ones become Cancelled.
func (s *Server) Settle() {
	defer s.flushUploads(context.Background())
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, c := range s.commands {
		for _, inv := range c.invocations {
			changed := false
			switch {
			case terminal(inv.status):
			case inv.status == StatusCancelling:
				changed = inv.set(now, StatusCancelled, StatusCancelled, -1)
			case inv.script.Outcome == Never:
				if inv.started.IsZero() {
					inv.started = now
				}
				changed = inv.set(now, StatusInProgress, StatusInProgress, -1)
			default:
				changed = inv.finish(now)
			}
			if changed {
				s.recordEvent(inv)
			}
		}
	}
}

func (s *Server) invocation(commandID, instanceID string) *invocation {
	c := s.byID[commandID]
	if c == nil {
		return nil
	}
	for _, inv := range c.invocations {
		if inv.instanceID == instanceID {
			return inv
		}
	}
	return nil
}

// serveHTTP routes an awsJson1.1 request to its operation.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-amzn-RequestId", newUUID())
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonSSM.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("unknown operation %q", target))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-amz-json-1.1") {
		writeError(w, http.StatusBadRequest, "SerializationException", fmt.Sprintf("unexpected Content-Type %q", ct))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	handlers := map[string]func([]byte) (any, *apiError){
		OpSendCommand:                 s.sendCommand,
		OpListCommands:                s.listCommands,
		OpListCommandInvocations:      s.listCommandInvocations,
		OpGetCommandInvocation:        s.getCommandInvocation,
		OpCancelCommand:               s.cancelCommand,
		OpDescribeInstanceInformation: s.describeInstanceInformation,
		OpListTagsForResource:         s.listTagsForResource,
	}
	h, ok := handlers[op]
	if !ok {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("ssmtest does not implement %s", op))
		return
	}

	s.mu.Lock()
	s.calls[op]++
	var f *fault
	if o, ok := s.outages[op]; ok && s.now().Before(o.until) {
		f = &o.fault
	} else if q := s.faults[op]; len(q) > 0 {
		if q[0].code != "" {
			f = &q[0]
		}
		s.faults[op] = q[1:]
	}
	s.mu.Unlock()

	if f != nil && !f.accept {
		writeError(w, f.status, f.code, f.msg)
		return
	}
	out, aerr := h(body)
	s.flushUploads(r.Context())
	switch {
	case aerr != nil:
		writeError(w, aerr.status, aerr.code, aerr.msg)
	case f != nil:
		writeError(w, f.status, f.code, f.msg)
	default:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(out)
	}
}

// apiError is an SSM error response.
type apiError struct {
	status int
	code   string
	msg    string
}

func clientError(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorJSON{Type: code, Message: msg})
}

func decode(body []byte, v any) *apiError {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return clientError("SerializationException", "cannot decode the request: %v", err)
	}
	return nil
}

// newUUID returns a random version 4 UUID, the form of SSM command ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cloudWatchGroup is the log group a command's output goes to, "" when it goes to none.
func cloudWatchGroup(c cloudWatchOutputConfigJSON) string {
	if !c.CloudWatchOutputEnabled {
		return ""
	}
	return c.CloudWatchLogGroupName
}
