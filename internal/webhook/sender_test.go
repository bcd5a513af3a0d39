package webhook

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/webhook/webhooktest"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func newSender(t *testing.T, p Policy, timeout time.Duration) *Sender {
	t.Helper()
	secret, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return NewSender(SenderConfig{Secret: secret, Policy: p, Timeout: timeout,
		Now: func() time.Time { return time.Unix(1700000000, 0) }})
}

func TestSend(t *testing.T) {
	t.Parallel()
	redirected := false
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !webhooktest.Verify(testSecret, r, body, time.Unix(1700000000, 0)) || r.Header.Get("webhook-id") != "t1_finished" || r.Header.Get("webhook-timestamp") != "1700000000" ||
			r.Header.Get("Content-Type") != "application/json" || string(body) != `{"type":"task.finished"}` || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/busy", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { redirected = true })
	// A body read to its end lets the server notice the client leave, which ends the context.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	localhost := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	tests := []struct {
		name    string
		policy  Policy
		url     string
		want    task.AttemptResult
		errPart string
	}{
		{"signed and delivered", Policy{AllowLoopback: true}, srv.URL + "/ok", task.AttemptResult{StatusCode: 204}, ""},
		{"busy, with Retry-After", Policy{AllowLoopback: true}, srv.URL + "/busy",
			task.AttemptResult{StatusCode: 503, RetryAfter: 7 * time.Second}, "answered 503"},
		{"a redirect is not followed", Policy{AllowLoopback: true}, srv.URL + "/moved",
			task.AttemptResult{StatusCode: 307}, "redirect"},
		{"no answer in time", Policy{AllowLoopback: true}, srv.URL + "/slow", task.AttemptResult{}, "did not answer within 300ms"},
		{"a name that resolves to loopback is refused on connect", Policy{}, "https" + strings.TrimPrefix(localhost, "http") + "/ok",
			task.AttemptResult{Refused: true}, "a loopback address"},
		{"http without the loopback allowance", Policy{}, srv.URL + "/ok", task.AttemptResult{Refused: true}, "must be an https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSender(t, tt.policy, 300*time.Millisecond)
			job := task.WebhookJob{ID: "t1_finished", Type: task.WebhookTaskFinished, TaskID: "t1", URL: tt.url}
			got := s.Send(t.Context(), job, []byte(`{"type":"task.finished"}`))
			gotErr := got.Err
			got.Err = ""
			if got != tt.want || !strings.Contains(gotErr, tt.errPart) || (tt.errPart == "") != (gotErr == "") {
				t.Errorf("Send = %+v (err %q), want %+v with an error containing %q", got, gotErr, tt.want, tt.errPart)
			}
		})
	}
	if redirected {
		t.Error("the redirect was followed")
	}
}
