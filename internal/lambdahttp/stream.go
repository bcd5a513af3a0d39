package lambdahttp

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/api"
)

// stream serves a streamed route: h runs in a goroutine of its own and writes into a pipe,
// whose other end is the body of the streaming response the Lambda runtime sends on as it
// reads it. The response is returned as soon as its status and header are fixed (the
// handler's first Write or Flush, or its end), and the invocation lasts until the handler
// returns. cancel ends the request's context when it does.
func stream(ctx context.Context, cancel context.CancelFunc, h http.Handler, ev events.APIGatewayProxyRequest,
	r *http.Request, log *slog.Logger) *events.APIGatewayProxyStreamingResponse {
	pr, pw := io.Pipe()
	w := &streamWriter{header: make(http.Header), pipe: pw, started: make(chan struct{})}
	go func() {
		defer cancel()
		defer pw.Close()
		ok := serve(h, w, r, log)
		switch {
		case w.begun():
		case !ok:
			w.send(problem(ev, http.StatusInternalServerError, api.ProblemInternal, ""))
		case ctx.Err() != nil:
			w.send(late(ctx, ev, r, log))
		}
		w.start()
	}()
	<-w.started
	return &events.APIGatewayProxyStreamingResponse{StatusCode: w.status, Headers: w.headers, MultiValueHeaders: w.multi, Body: pr}
}

// streamWriter is the http.ResponseWriter of a streamed route. Writes go straight into the
// pipe, and so to the client: Flush has nothing to push, and only fixes the status and
// header if nothing has been written yet.
type streamWriter struct {
	header http.Header
	pipe   *io.PipeWriter

	once    sync.Once
	started chan struct{} // closed once status, headers and multi are fixed
	status  int
	headers map[string]string
	multi   map[string][]string
}

// Header implements http.ResponseWriter.
func (w *streamWriter) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter: the first final status wins, and informational
// ones are dropped, as in the buffered writer.
func (w *streamWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 || code > 999 {
		return
	}
	w.status = code
}

// Write implements http.ResponseWriter. It returns once the runtime has read b.
func (w *streamWriter) Write(b []byte) (int, error) {
	if w.header.Get("Content-Type") == "" && !w.begun() && len(b) > 0 {
		w.header.Set("Content-Type", http.DetectContentType(b))
	}
	w.start()
	return w.pipe.Write(b)
}

// Flush implements http.Flusher.
func (w *streamWriter) Flush() { w.start() }

// start fixes the status and header the response's prelude carries.
func (w *streamWriter) start() {
	w.once.Do(func() {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		w.headers, w.multi = gatewayHeaders(w.header)
		close(w.started)
	})
}

// begun reports whether the status and header are fixed.
func (w *streamWriter) begun() bool {
	select {
	case <-w.started:
		return true
	default:
		return false
	}
}

// send writes an answer made here.
func (w *streamWriter) send(a answer) {
	for k, vs := range a.header {
		w.header[k] = vs
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}
