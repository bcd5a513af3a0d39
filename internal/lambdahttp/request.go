package lambdahttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// ErrNoIdentity is returned by Owner when API Gateway passed no caller identity: the route has
// no authorizer, or the request did not come through API Gateway.
var ErrNoIdentity = errors.New("lambdahttp: the request carries no caller identity")

// contextKey keys the gateway's request details in a request's context.
type contextKey struct{}

// gateway is what NewRequest keeps of the event beside the http.Request.
type gateway struct {
	rc events.APIGatewayProxyRequestContext
	// prefix is the part of the caller's path in front of the API's own paths: "/v1" for the
	// stage of the execute-api endpoint, "/fleet" for a custom domain's base path mapping, ""
	// for a custom domain mapped at its root.
	prefix string
}

// NewRequest turns a REST API proxy event (payload format 1.0) into an *http.Request for ctx.
// The request's path is the API's own path (the event's path, which API Gateway gives without
// the stage or base path), its query and headers keep every value API Gateway passed (the
// multi-value forms), its body is decoded from base64 when the event says so, and its context
// carries the event's request context for Owner and BaseURL.
func NewRequest(ctx context.Context, ev events.APIGatewayProxyRequest) (*http.Request, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		decoded, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("lambdahttp: decode base64 body: %w", err)
		}
		body = decoded
	}
	path := ev.Path
	if path == "" {
		path = ev.RequestContext.ResourcePath
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	u := &url.URL{Path: path}
	if strings.Contains(path, "%") {
		unescaped, err := url.PathUnescape(path)
		if err != nil {
			return nil, fmt.Errorf("lambdahttp: path %q: %w", path, err)
		}
		u.Path, u.RawPath = unescaped, path
	}
	u.RawQuery = query(ev)

	method := strings.ToUpper(ev.HTTPMethod)
	if method == "" {
		method = strings.ToUpper(ev.RequestContext.HTTPMethod)
	}
	r, err := http.NewRequestWithContext(ctx, method, "/", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("lambdahttp: %s %s: %w", method, path, err)
	}
	r.URL = u
	r.RequestURI = u.RequestURI()
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	if p := ev.RequestContext.Protocol; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			r.Proto, r.ProtoMajor, r.ProtoMinor = p, major, minor
		}
	}
	r.RemoteAddr = ev.RequestContext.Identity.SourceIP
	for k, v := range ev.Headers {
		r.Header[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	for k, vs := range ev.MultiValueHeaders {
		if len(vs) > 0 {
			r.Header[textproto.CanonicalMIMEHeaderKey(k)] = slices.Clone(vs)
		}
	}
	r.Host = ev.RequestContext.DomainName
	if h := r.Header.Get("Host"); h != "" {
		r.Host = h
	}
	r.Header.Del("Host")
	r.Header.Del("Content-Length")
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}

	g := gateway{rc: ev.RequestContext, prefix: prefix(ev)}
	return r.WithContext(context.WithValue(ctx, contextKey{}, g)), nil
}

// prefix is what the caller's path (the request context's path) has in front of the API's own
// path (the event's path): the stage on the execute-api endpoint, a custom domain's base path.
// An event without the request context's path (a hand-written one) has the stage in front, as
// the execute-api endpoint would.
func prefix(ev events.APIGatewayProxyRequest) string {
	full := ev.RequestContext.Path
	if full == "" {
		if s := ev.RequestContext.Stage; s != "" && s != "$default" {
			return "/" + s
		}
		return ""
	}
	if p, ok := strings.CutSuffix(full, ev.Path); ok && (p == "" || p[0] == '/') && !strings.HasSuffix(p, "/") {
		return p
	}
	return ""
}

// query is the event's query string: every value of every parameter, encoded again in a
// stable order (API Gateway passes them decoded).
func query(ev events.APIGatewayProxyRequest) string {
	values := url.Values{}
	for k, v := range ev.QueryStringParameters {
		values[k] = []string{v}
	}
	for k, vs := range ev.MultiValueQueryStringParameters {
		if len(vs) > 0 {
			values[k] = slices.Clone(vs)
		}
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(values)) {
		for _, v := range values[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(v))
		}
	}
	return b.String()
}

// RequestContext returns the API Gateway request context of a request made by NewRequest.
func RequestContext(ctx context.Context) (events.APIGatewayProxyRequestContext, bool) {
	g, ok := ctx.Value(contextKey{}).(gateway)
	return g.rc, ok
}

// Owner identifies the caller from the request context: the IAM principal's ARN where the
// route uses IAM authorization, or, where an authorizer is configured instead, the token's
// subject (a Cognito user pool authorizer's claims) or the principal a Lambda authorizer
// returned. It is httpapi's Owner on Lambda; ErrNoIdentity makes httpapi answer 401.
func Owner(r *http.Request) (string, error) {
	g, ok := r.Context().Value(contextKey{}).(gateway)
	if !ok {
		return "", ErrNoIdentity
	}
	if arn := g.rc.Identity.UserArn; arn != "" {
		return arn, nil
	}
	if claims, ok := g.rc.Authorizer["claims"].(map[string]any); ok {
		if sub, ok := claims["sub"].(string); ok && sub != "" {
			return sub, nil
		}
	}
	if p, ok := g.rc.Authorizer["principalId"].(string); ok && p != "" {
		return p, nil
	}
	return "", ErrNoIdentity
}

// BaseURL is the absolute URL the caller reached the API at, without a trailing slash: https
// (API Gateway serves nothing else), the domain it called (the execute-api endpoint or a custom
// domain) as the request context names it, and the stage or base path it used. It is
// httpapi's BaseURL on Lambda. Neither the Host header nor X-Forwarded-* is read: API Gateway
// passes on what the caller sent in them. Only an event without a domain name, which API
// Gateway never sends (a hand-written one), falls back on its Host, as httpapi has checked it.
func BaseURL(r *http.Request) string {
	g, ok := r.Context().Value(contextKey{}).(gateway)
	if !ok || g.rc.DomainName == "" {
		return "https://" + r.Host + g.prefix
	}
	return "https://" + g.rc.DomainName + g.prefix
}
