package lambdahttp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/api"
)

// streamEvent is gatewayEvent for the streamed resource /tasks/{id}/events.
func streamEvent() events.APIGatewayProxyRequest {
	ev := gatewayEvent()
	ev.Resource, ev.Path, ev.RequestContext.Path = "/tasks/{id}/events", "/tasks/01JD/events", "/v1/tasks/01JD/events"
	return ev
}

// invokeStreamed calls the Lambda handler and returns its streamed response.
func invokeStreamed(t *testing.T, h http.Handler, ctx context.Context, ev events.APIGatewayProxyRequest) *events.APIGatewayProxyStreamingResponse {
	t.Helper()
	out, err := Handler(h, Options{Streamed: []string{"/tasks/{id}/events"}})(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	resp, ok := out.(*events.APIGatewayProxyStreamingResponse)
	if !ok {
		t.Fatalf("the handler answered a streamed route with %T", out)
	}
	return resp
}

// TestStreamedRouteSendsWhatIsWrittenAsItIsWritten reads the first frame of a stream while
// the handler still holds the second back: the body is not buffered.
func TestStreamedRouteSendsWhatIsWrittenAsItIsWritten(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Request-Id", "rid")
		io.WriteString(w, "id: 1\n\n")
		http.NewResponseController(w).Flush()
		<-release
		io.WriteString(w, "id: 2\n\n")
	})
	resp := invokeStreamed(t, h, context.Background(), streamEvent())
	// The exact bytes API Gateway expects: the status and headers as JSON, eight NUL bytes,
	// then the body.
	want := []byte(`{"statusCode":200,"headers":{"Content-Type":"text/event-stream","X-Request-Id":"rid"}}` +
		"\x00\x00\x00\x00\x00\x00\x00\x00" + "id: 1\n\n")
	got := make([]byte, len(want))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp, got); done <- err }()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the stream began %q, %v; want %q", got, err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first frame did not arrive while the handler held the second back")
	}
	close(release)
	rest, err := io.ReadAll(resp)
	if err != nil || string(rest) != "id: 2\n\n" {
		t.Errorf("the rest of the stream: %q, %v", rest, err)
	}
}

func TestStreamedRouteRunsUntilTheFunctionsDeadline(t *testing.T) {
	t.Parallel()
	var deadline time.Time
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, _ = r.Context().Deadline()
		io.WriteString(w, "ok")
	})
	// A buffered route is bounded by API Gateway's 29 s, a streamed one by the function's
	// own deadline (or API Gateway's 15 minutes).
	lambdaDeadline := time.Now().Add(5 * time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), lambdaDeadline)
	defer cancel()
	resp := invokeStreamed(t, h, ctx, streamEvent())
	if _, err := io.ReadAll(resp); err != nil {
		t.Fatal(err)
	}
	if want := lambdaDeadline.Add(-DefaultReserve); !deadline.Equal(want) {
		t.Errorf("a streamed request's deadline %v, want the function's less the reserve, %v", deadline, want)
	}
	invokeBuffered(t, Handler(h, Options{Streamed: []string{"/tasks/{id}/events"}}), ctx, gatewayEvent())
	if left := time.Until(deadline); left > BufferedLimit || left < BufferedLimit-DefaultReserve-5*time.Second {
		t.Errorf("a buffered request's deadline is %v away, want API Gateway's %v less the reserve", left, BufferedLimit)
	}
}

func TestStreamedRouteProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		ctx     func() (context.Context, context.CancelFunc)
		status  int
		typ     string
	}{
		{"panic before a write", func(http.ResponseWriter, *http.Request) { panic("boom") },
			func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			http.StatusInternalServerError, api.ProblemInternal},
		{"out of time before a write", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), DefaultReserve+200*time.Millisecond)
			},
			http.StatusServiceUnavailable, api.ProblemUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := tt.ctx()
			defer cancel()
			raw, err := io.ReadAll(invokeStreamed(t, tt.handler, ctx, streamEvent()))
			if err != nil {
				t.Fatal(err)
			}
			head, body, _ := bytes.Cut(raw, make([]byte, 8))
			var meta struct {
				StatusCode int               `json:"statusCode"`
				Headers    map[string]string `json:"headers"`
			}
			var p api.Problem
			if json.Unmarshal(head, &meta) != nil || json.Unmarshal(body, &p) != nil || meta.StatusCode != tt.status ||
				meta.Headers["Content-Type"] != api.MediaProblem || p.Type != tt.typ || p.RequestID != "JKJaXmPLvHcESHA=" {
				t.Errorf("got %q", raw)
			}
		})
	}
}
