package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

func init() {
	// kin-openapi has no decoder for event streams; the stream is checked as text here and
	// each event's data against the Task schema by the walker.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
}

// reqValidity is what the spec must say about a request of the walk.
type reqValidity int

const (
	specValid   reqValidity = iota // the spec accepts the request
	specInvalid                    // the spec refuses it too (bad input the server must refuse)
	specAny                        // the spec cannot judge it (a size limit, an unreadable cursor)
	unrouted                       // no operation of the spec matches: 404 or 405
)

// specWalker sends requests to the real handler and checks each request and response against
// openapi.yaml, recording which documented responses the walk produced.
type specWalker struct {
	t       *testing.T
	b       *testBundle
	doc     *openapi3.T
	router  routers.Router
	opts    *openapi3filter.Options
	covered map[string]bool
}

func newSpecWalker(t *testing.T, b *testBundle) *specWalker {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../../openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableMultiError()); err != nil {
		t.Fatalf("openapi.yaml is not a valid document: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	doc.Servers = openapi3.Servers{{URL: b.srv.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the spec does not list fails
		MultiError:            true,
		SkipSettingDefaults:   true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			auth := in.RequestValidationInput.Request.Header.Get("Authorization")
			prefix := map[string]string{"bearerAuth": "Bearer ", "awsSigV4": "AWS4-HMAC-SHA256 "}[in.SecuritySchemeName]
			if prefix == "" || !strings.HasPrefix(auth, prefix) {
				return fmt.Errorf("no %s credentials", in.SecuritySchemeName)
			}
			return nil
		},
	}
	return &specWalker{t: t, b: b, doc: doc, router: router, opts: opts, covered: map[string]bool{}}
}

// step sends r and checks it against the spec. during, when set, runs once the response's
// headers have arrived and before its body is read (to make a streamed task change).
func (s *specWalker) step(name string, r req, status int, validity reqValidity, during ...func()) resp {
	s.t.Helper()
	sent := s.b.newRequest(context.Background(), r)
	check := s.b.newRequest(context.Background(), r)
	route, params, rerr := s.router.FindRoute(check)
	var in *openapi3filter.RequestValidationInput
	switch {
	case validity == unrouted:
		if rerr == nil {
			s.t.Errorf("%s: %s %s matches %s %s in the spec", name, r.method, r.path, route.Method, route.Path)
		}
	case rerr != nil:
		s.t.Fatalf("%s: %s %s is not in the spec: %v", name, r.method, r.path, rerr)
	default:
		in = &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route, Options: s.opts}
		err := openapi3filter.ValidateRequest(context.Background(), in)
		if validity == specValid && err != nil {
			s.t.Errorf("%s: the spec refuses a request the server should accept: %v", name, err)
		}
		if validity == specInvalid && err == nil {
			s.t.Errorf("%s: the spec accepts a request the server must refuse", name)
		}
	}

	var res *http.Response
	var err error
	if r.stall {
		res = s.b.stalledDo(r)
	} else if res, err = s.b.srv.Client().Do(sent); err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	defer res.Body.Close()
	for _, f := range during {
		f()
	}
	var body []byte
	if r.firstEvent {
		body, err = readFirstEvent(res.Body)
	} else {
		body, err = io.ReadAll(res.Body)
	}
	if err != nil {
		s.t.Fatalf("%s: read body: %v", name, err)
	}
	got := resp{res, body}
	if res.StatusCode != status {
		s.t.Fatalf("%s: %s %s answered %d, want %d: %s", name, r.method, r.path, res.StatusCode, status, body)
	}
	if in == nil {
		s.checkUnrouted(name, got)
		return got
	}
	s.covered[fmt.Sprintf("%s %d", route.Operation.OperationID, res.StatusCode)] = true
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header, Options: s.opts}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		s.t.Errorf("%s: the response does not match the spec: %v\n%s", name, err, body)
	}
	if res.StatusCode == http.StatusNotModified {
		s.checkHeadersOnly(name, route, got)
	}
	if res.Header.Get("Content-Type") == "text/event-stream" {
		s.checkEvents(name, body)
	}
	return got
}

// checkUnrouted checks a 404 or 405 for a path or method the spec does not have: a Problem.
func (s *specWalker) checkUnrouted(name string, r resp) {
	s.t.Helper()
	if r.StatusCode != http.StatusNotFound && r.StatusCode != http.StatusMethodNotAllowed {
		s.t.Errorf("%s: an unrouted request answered %d", name, r.StatusCode)
	}
	s.visit(name, "Problem", r.body)
	if !validRequestID(r.Header.Get("X-Request-Id")) {
		s.t.Errorf("%s: X-Request-Id %q", name, r.Header.Get("X-Request-Id"))
	}
}

// checkHeadersOnly checks what ValidateResponse skips for a 304: that it is documented, has no
// body, and carries the headers the spec requires.
func (s *specWalker) checkHeadersOnly(name string, route *routers.Route, r resp) {
	s.t.Helper()
	doc := route.Operation.Responses.Status(r.StatusCode)
	if doc == nil {
		s.t.Errorf("%s: %d is not documented", name, r.StatusCode)
		return
	}
	if len(r.body) != 0 {
		s.t.Errorf("%s: a %d with a body", name, r.StatusCode)
	}
	for h, ref := range doc.Value.Headers {
		if ref.Value.Required && r.Header.Get(h) == "" {
			s.t.Errorf("%s: %d without its required %s header", name, r.StatusCode, h)
		}
		if v := r.Header.Get(h); v != "" && ref.Value.Schema.Value.Pattern != "" {
			if err := ref.Value.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
				s.t.Errorf("%s: header %s: %v", name, h, err)
			}
		}
	}
}

// readFirstEvent reads a stream up to the end of its first event, comments skipped.
func readFirstEvent(r io.Reader) ([]byte, error) {
	var out []byte
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	event := false
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line+"\n"...)
		switch {
		case line == "" && event:
			return out, nil
		case line != "" && !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "retry:"):
			event = true
		}
	}
	return out, fmt.Errorf("the stream ended before its first event: %v", sc.Err())
}

// checkEvents checks every event of a stream, after a block that sets the reconnection time:
// a task event whose data is a Task, or a tasks event whose data is a TaskList.
func (s *specWalker) checkEvents(name string, body []byte) {
	s.t.Helper()
	if !strings.HasPrefix(string(body), "retry: ") {
		s.t.Errorf("%s: the stream does not start with its retry field: %.40q", name, body)
	}
	for block := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n\n") {
		if strings.HasPrefix(block, ":") || strings.HasPrefix(block, "retry: ") {
			continue
		}
		var data string
		for line := range strings.SplitSeq(block, "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				data += d
			}
		}
		switch {
		case strings.Contains(block, "event: tasks\n"):
			s.visit(name, "TaskList", []byte(data))
		case strings.Contains(block, "event: task\n"):
			s.visit(name, "Task", []byte(data))
		default:
			s.t.Errorf("%s: event %q is neither a task nor a tasks event", name, block)
		}
	}
}

// visit checks data against a component schema.
func (s *specWalker) visit(name, schema string, data []byte) {
	s.t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		s.t.Errorf("%s: %s is not JSON: %v: %s", name, schema, err, data)
		return
	}
	ref := s.doc.Components.Schemas[schema]
	if err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		s.t.Errorf("%s: does not match %s: %v\n%s", name, schema, err, data)
	}
}

// uncovered lists the documented responses the walk never produced, less those excused.
func (s *specWalker) uncovered(excused func(op string, status int) bool) []string {
	var missing []string
	for path, item := range s.doc.Paths.Map() {
		for _, op := range item.Operations() {
			for code := range op.Responses.Map() {
				var status int
				fmt.Sscan(code, &status)
				key := fmt.Sprintf("%s %d", op.OperationID, status)
				if !s.covered[key] && !excused(op.OperationID, status) {
					missing = append(missing, key+" ("+path+")")
				}
			}
		}
	}
	slices.Sort(missing)
	return missing
}

// changeWhenWaiting runs change once a request waits on task id at version, from another
// goroutine; the returned function reports its error.
func (s *specWalker) changeWhenWaiting(id string, version int64, change func() error) func() error {
	want := fmt.Sprintf("%s@%d", id, version)
	errc := make(chan error, 1)
	go func() {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got := <-s.b.watcher.waiting:
				if got == want {
					errc <- change()
					return
				}
			case <-deadline:
				errc <- fmt.Errorf("no request waited on %s", want)
				return
			}
		}
	}()
	return func() error { return <-errc }
}
