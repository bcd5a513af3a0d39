package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

// call is one API request, described so that it can be sent again on retry.
type call struct {
	method string
	// path is appended to the endpoint's path, already escaped (see taskPath).
	path   string
	query  url.Values
	header http.Header
	body   []byte
	// retry says the call may be sent more than once: true for GET and DELETE, and for a POST
	// that carries an Idempotency-Key.
	retry bool
	// buffer reads the whole response body inside the retry loop, so that a connection dropped
	// in the middle of a body is retried like one dropped before the headers.
	buffer bool
	// noRedirect returns a redirect as the answer instead of following it, so that the
	// request's credentials are not sent on to where it points.
	noRedirect bool
}

// do sends cl, retrying as the policy allows, and returns a response whose status is 2xx or
// 304; the caller closes its body. Error statuses come back as *Error.
func (c *Client) do(ctx context.Context, cl call) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := c.attempt(ctx, cl)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: %s %s: %w", cl.method, c.describe(cl), context.Cause(ctx))
		}
		var apiErr *Error
		isAPI := errors.As(err, &apiErr)
		if !cl.retry || attempt >= c.retry.MaxAttempts || isAPI && !retryableStatus(cl, apiErr) {
			if isAPI {
				return nil, apiErr
			}
			// *url.Error repeats the method and URL; say them once.
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err
			}
			if attempt > 1 {
				return nil, fmt.Errorf("client: %s %s: %w (after %d attempts)", cl.method, c.describe(cl), err, attempt)
			}
			return nil, fmt.Errorf("client: %s %s: %w", cl.method, c.describe(cl), err)
		}
		delay := c.backoff(attempt)
		if isAPI && apiErr.RetryAfter > delay {
			delay = c.capPause(apiErr.RetryAfter)
		}
		if err := c.sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("client: %s %s: %w", cl.method, c.describe(cl), context.Cause(ctx))
		}
	}
}

// attempt sends cl once.
func (c *Client) attempt(ctx context.Context, cl call) (*http.Response, error) {
	req, err := c.request(ctx, cl)
	if err != nil {
		return nil, err
	}
	hc := c.hc
	if cl.noRedirect {
		stop := *hc
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		hc = &stop
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		return nil, readError(resp, c.now())
	}
	if cl.buffer {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp, nil
}

// request builds a fresh *http.Request for one attempt; a signed request must be signed anew
// each time, since the signature covers the time.
func (c *Client) request(ctx context.Context, cl call) (*http.Request, error) {
	u := c.target(cl)
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, vs := range cl.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", api.MediaJSON+", "+api.MediaProblem)
	}
	if cl.body != nil {
		req.Header.Set("Content-Type", api.MediaJSON)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.signer != nil {
		if err := c.signer.sign(ctx, req, cl.body, c.now()); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// target is the URL cl goes to: always on the endpoint, so that credentials go nowhere else.
func (c *Client) target(cl call) *url.URL {
	u := *c.base
	raw := c.base.EscapedPath() + cl.path
	if p, err := url.PathUnescape(raw); err == nil {
		u.Path, u.RawPath = p, raw
	}
	u.RawQuery = cl.query.Encode()
	return &u
}

// describe names cl's target in errors: the URL without its query.
func (c *Client) describe(cl call) string {
	u := c.target(cl)
	u.RawQuery = ""
	return u.String()
}

// retryableStatus reports whether an error answer may succeed if the call is sent again.
func retryableStatus(cl call, e *Error) bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusConflict:
		// The first attempt of this very submit is still being written: its answer was lost,
		// and the retry must wait for it to be stored.
		return cl.method == http.MethodPost && e.Type == api.ProblemInProgress
	}
	return false
}

// backoff is the pause before attempt+1: exponential from BaseDelay, capped at MaxDelay, with
// the upper half jittered so that many clients do not retry in step.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.retry.BaseDelay
	for range attempt - 1 {
		if d >= c.retry.MaxDelay {
			break
		}
		d *= 2
	}
	d = min(d, c.retry.MaxDelay)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// capPause bounds a pause the server asked for by the policy's MaxRetryAfter.
func (c *Client) capPause(d time.Duration) time.Duration {
	if c.retry.MaxRetryAfter > 0 {
		return min(d, c.retry.MaxRetryAfter)
	}
	return d
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Request builds a request of method for path below the endpoint (escaped, starting with
// "/"), with rawQuery, header and body, that carries the client's credentials: its bearer
// token, or a SigV4 signature over the request and body. It is how a program that relays
// other requests to the API, such as `fleetrun ui`, sends them as this client would. The
// caller sends it with an http.Client of its own and takes the answer as it comes: no retry,
// no decoding of problems.
func (c *Client) Request(ctx context.Context, method, path, rawQuery string, header http.Header, body []byte) (*http.Request, error) {
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("client: query %q: %w", rawQuery, err)
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("client: path %q does not start with /", path)
	}
	return c.request(ctx, call{method: method, path: path, query: query, header: header, body: body})
}

// Authenticated reports whether the client sends credentials of its own: a token, or SigV4.
func (c *Client) Authenticated() bool { return c.token != "" || c.signer != nil }
