package awsretry

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// MaxBufferedBody is the largest request body BufferBodies copies. fleetrun's API calls send a
// few kilobytes of JSON; anything larger (an upload) is streamed as the SDK gives it.
const MaxBufferedBody = 1 << 20

// BufferBodies returns an HTTP client that hands the transport its own copy of every request
// body of known size up to MaxBufferedBody.
//
// The SDK closes a request's body as soon as the round trip returns, and net/http may return the
// response while its write loop is still finishing the request (it reads the body once more to
// check its length). When the SDK's close wins that race, the write fails, the transport closes
// the connection under the response being read, and the SDK sends the call again: an extra
// request, billed and counted, for a call that had succeeded. With its own copy, nothing the
// SDK closes reaches the transport. A nil c (what config.LoadDefaultConfig leaves when nothing
// configures a client, so that each service client would make its own) is the SDK's default
// client.
func BufferBodies(c aws.HTTPClient) aws.HTTPClient {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	return bufferingClient{c}
}

type bufferingClient struct{ next aws.HTTPClient }

// Do implements aws.HTTPClient.
func (c bufferingClient) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength < 0 || req.ContentLength > MaxBufferedBody {
		return c.next.Do(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("awsretry: read request body: %w", err)
	}
	copied := req.Clone(req.Context())
	copied.Body = io.NopCloser(bytes.NewReader(body))
	copied.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c.next.Do(copied)
}

// HTTPClient is the SDK's default HTTP client with BufferBodies. A configuration loaded with
// config.LoadDefaultConfig keeps its own client (which may carry a custom CA bundle) and wraps
// it instead: cfg.HTTPClient = awsretry.BufferBodies(cfg.HTTPClient).
func HTTPClient() aws.HTTPClient {
	return BufferBodies(nil)
}
