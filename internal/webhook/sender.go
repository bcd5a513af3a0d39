package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SenderConfig wires a Sender. Secret is required.
type SenderConfig struct {
	Secret Secret
	// Policy is checked again for every request and every connection.
	Policy Policy
	// Timeout bounds one attempt; task.WebhookTimeout when zero.
	Timeout time.Duration
	// Now is the clock of the webhook-timestamp header; time.Now when nil.
	Now func() time.Time
}

// Sender posts signed webhook requests. It is safe for concurrent use.
type Sender struct {
	secret  Secret
	policy  Policy
	timeout time.Duration
	now     func() time.Time
	client  *http.Client
}

// NewSender returns a Sender for cfg.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = task.WebhookTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, ControlContext: cfg.Policy.control}
	transport := &http.Transport{
		// No proxy: a proxy would make the connection, and the dialer's check would see only it.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Sender{secret: cfg.Secret, policy: cfg.Policy, timeout: cfg.Timeout, now: cfg.Now,
		client: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirect is an answer, not a new destination: following it would send the
			// event somewhere the task never named.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
}

// responseReadLimit bounds how much of a receiver's answer is read; the rest is dropped.
const responseReadLimit = 4 << 10

// Send makes one attempt to post payload for job and says what it came to. It never returns an
// error: whatever went wrong is in the result, for the engine to record and decide on.
func (s *Sender) Send(ctx context.Context, job task.WebhookJob, payload []byte) task.AttemptResult {
	u, _, err := parseURL(job.URL)
	if err == nil && u.Scheme == "http" && !s.policy.AllowLoopback {
		err = errors.New("must be an https URL")
	}
	if err != nil {
		return task.AttemptResult{Refused: true, Err: "the URL is no longer allowed: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if u.Scheme == "http" {
		ctx = context.WithValue(ctx, plainHTTPKey{}, true)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.URL, bytes.NewReader(payload))
	if err != nil {
		return task.AttemptResult{Refused: true, Err: "the URL cannot be requested: " + err.Error()}
	}
	ts := s.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fleetrun-webhooks/1")
	req.Header.Set(HeaderID, job.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, s.secret.Sign(job.ID, ts, payload))
	resp, err := s.client.Do(req)
	if err != nil {
		return task.AttemptResult{Err: describe(err, s.timeout), Refused: errors.Is(err, ErrRefused)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseReadLimit))
	res := task.AttemptResult{StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), s.now())}
	switch {
	case res.Delivered():
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.Err = "the receiver answered with a redirect, which is not followed"
	default:
		res.Err = fmt.Sprintf("the receiver answered %d", resp.StatusCode)
	}
	return res
}

// describe says in words why a request got no answer.
func describe(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, ErrRefused):
		msg := err.Error()
		if i := strings.Index(msg, "webhook: "); i >= 0 {
			msg = msg[i+len("webhook: "):]
		}
		return "not called: " + msg
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("the receiver did not answer within %s", timeout)
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap()
	}
	return "no answer: " + err.Error()
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date. Zero when absent or
// unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
