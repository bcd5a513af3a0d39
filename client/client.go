// Package client is the Go client of fleetrun's HTTP API: submit a script to run on a fleet of
// devices, wait for it while watching progress, read per-device results and output, cancel.
//
// The client is built for long-running work over unreliable networks. Reads and cancels are
// retried with backoff on network errors and on 429/502/503/504 answers, honouring the server's
// Retry-After; submits carry an Idempotency-Key so that they can be retried the same way
// without ever creating a second task. Problem responses become *Error values.
//
// It speaks to the local server (`fleetrun serve`, optionally with a bearer token) and to the
// deployed API behind API Gateway, whose requests it signs with SigV4.
package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fleetrun/fleetrun/api"
)

// Client calls one fleetrun endpoint. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	token     string
	signer    *signer
	userAgent string
	retry     RetryPolicy
	pollWait  time.Duration

	// now and sleep are the client's clock; tests replace them so that backoff and
	// Retry-After can be checked without waiting.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	// newKey makes idempotency keys.
	newKey func() string
}

// RetryPolicy says how a failed call is retried. A call is attempted at most MaxAttempts times;
// between attempts the client waits an exponentially growing, jittered delay that starts at
// BaseDelay and is capped at MaxDelay, or longer when the server's Retry-After asks for it (up
// to MaxRetryAfter).
type RetryPolicy struct {
	MaxAttempts   int
	BaseDelay     time.Duration
	MaxDelay      time.Duration
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy rides out about ten seconds of a server restart or a dropped network.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 6, BaseDelay: 250 * time.Millisecond,
	MaxDelay: 5 * time.Second, MaxRetryAfter: time.Minute}

// NoRetry makes every call a single attempt.
var NoRetry = RetryPolicy{MaxAttempts: 1}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient makes the client send its requests through hc. A long-polling Wait holds a
// request open for up to 20 seconds, so hc's Timeout, if any, must be longer (or see
// WithLongPoll).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("client: nil http.Client")
		}
		c.hc = hc
		return nil
	}
}

// WithToken sends "Authorization: Bearer <token>" with every request, as a local server started
// with a token requires.
func WithToken(token string) Option {
	return func(c *Client) error {
		c.token = token
		return nil
	}
}

// WithSigV4 signs every request with AWS Signature Version 4 for API Gateway (service
// execute-api) in region, with credentials from creds (for instance the Credentials of
// config.LoadDefaultConfig). Credentials are cached between requests.
func WithSigV4(region string, creds aws.CredentialsProvider) Option {
	return func(c *Client) error {
		if region == "" {
			return errors.New("client: SigV4 signing needs a region")
		}
		if creds == nil {
			return errors.New("client: SigV4 signing needs credentials")
		}
		c.signer = newSigner(ServiceExecuteAPI, region, creds)
		return nil
	}
}

// WithUserAgent sets the User-Agent header, so that server logs can tell callers apart.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// WithRetry replaces DefaultRetryPolicy.
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.MaxAttempts < 1 {
			return fmt.Errorf("client: retry policy needs at least one attempt, not %d", p.MaxAttempts)
		}
		c.retry = p
		return nil
	}
}

// WithLongPoll sets how long one long-poll of Wait may be held by the server (Prefer: wait).
// The server caps it at api.MaxWaitSeconds; zero makes Wait poll plainly, pausing as the
// server's Retry-After says.
func WithLongPoll(d time.Duration) Option {
	return func(c *Client) error {
		if d < 0 {
			return fmt.Errorf("client: negative long-poll %s", d)
		}
		c.pollWait = min(d, maxLongPoll)
		return nil
	}
}

// maxLongPoll is api.MaxWaitSeconds as a duration.
const maxLongPoll = api.MaxWaitSeconds * time.Second

// ServiceExecuteAPI is the SigV4 service name of API Gateway.
const ServiceExecuteAPI = "execute-api"

// New returns a client of the fleetrun API at endpoint, such as "http://127.0.0.1:8080" or
// "https://abc123.execute-api.eu-west-1.amazonaws.com/prod".
func New(endpoint string, opts ...Option) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("client: endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: endpoint %q is not an http(s) URL", endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	c := &Client{
		base:      u,
		hc:        http.DefaultClient,
		userAgent: "fleetrun-go-client",
		retry:     DefaultRetryPolicy,
		pollWait:  maxLongPoll,
		now:       time.Now,
		sleep:     sleepCtx,
		newKey:    rand.Text,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.token != "" && c.signer != nil {
		return nil, errors.New("client: a bearer token and SigV4 signing cannot be used together")
	}
	return c, nil
}

// Endpoint returns the endpoint the client calls.
func (c *Client) Endpoint() string { return c.base.String() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
