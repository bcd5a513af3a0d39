package lambdahttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
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
	rc events.APIGatewayV2HTTPRequestContext
	// prefix is the part of the caller's path in front of the API's own paths: "/prod" for a
	// named stage, "/v1" for a custom domain's API mapping, "" otherwise.
	prefix string
}

// NewRequest turns an HTTP API payload 2.0 event into an *http.Request for ctx. The request's
// path is the API's own path (stage or mapping prefix removed), its body is decoded from base64
// when the event says so, its headers keep API Gateway's comma-joined values as one field line
// each (equivalent under RFC 9110 for list headers, and harmless for the others), its cookies
// become one Cookie header, and its context carries the event's request context for Owner and
// BaseURL.
func NewRequest(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		decoded, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("lambdahttp: decode base64 body: %w", err)
		}
		body = decoded
	}
	raw := ev.RawPath
	if raw == "" {
		raw = ev.RequestContext.HTTP.Path
	}
	if raw == "" || raw[0] != '/' {
		raw = "/" + raw
	}
	prefix, path := splitPrefix(raw, ev.RouteKey, ev.RequestContext.Stage)
	// Parsed behind a scheme and host so that a path starting with "//" stays a path.
	u, err := url.Parse("https://gateway" + path)
	if err != nil {
		return nil, fmt.Errorf("lambdahttp: path %q: %w", raw, err)
	}
	u.Scheme, u.Host = "", ""
	u.RawQuery = rawQuery(ev)

	method := strings.ToUpper(ev.RequestContext.HTTP.Method)
	if method == "" {
		method, _, _ = strings.Cut(ev.RouteKey, " ")
	}
	host := ev.RequestContext.DomainName
	if h := header(ev.Headers, "Host"); h != "" {
		host = h
	}
	r, err := http.NewRequestWithContext(ctx, method, "/", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("lambdahttp: %s %s: %w", method, raw, err)
	}
	r.URL = u
	r.RequestURI = u.RequestURI()
	r.Host = host
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	if p := ev.RequestContext.HTTP.Protocol; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			r.Proto, r.ProtoMajor, r.ProtoMinor = p, major, minor
		}
	}
	r.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	for k, v := range ev.Headers {
		r.Header[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	if len(ev.Cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	r.Header.Del("Content-Length")
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}

	g := gateway{rc: ev.RequestContext, prefix: prefix}
	return r.WithContext(context.WithValue(ctx, contextKey{}, g)), nil
}

// splitPrefix separates the caller's path into the prefix API Gateway added (stage, API
// mapping) and the API's own path, by lining the route key's path template up with the end of
// the path. See the package documentation.
func splitPrefix(raw, routeKey, stage string) (prefix, path string) {
	if _, tmpl, ok := strings.Cut(routeKey, " "); ok && strings.HasPrefix(tmpl, "/") && !strings.Contains(tmpl, "+}") {
		want := segments(tmpl)
		got := segments(raw)
		if n := len(got) - len(want); n >= 0 && matches(want, got[n:]) {
			prefix = strings.Join(got[:n], "")
			if path = raw[len(prefix):]; path == "" {
				path = "/"
			}
			return prefix, path
		}
	}
	if stage != "" && stage != "$default" {
		s := "/" + stage
		if raw == s || strings.HasPrefix(raw, s+"/") {
			if rest := raw[len(s):]; rest != "" {
				return s, rest
			}
			return s, "/"
		}
	}
	return "", raw
}

// segments splits a path into its segments, each with its leading slash; "/" has none.
func segments(p string) []string {
	var out []string
	for p != "" && p != "/" {
		i := strings.IndexByte(p[1:], '/')
		if i < 0 {
			out = append(out, p)
			break
		}
		out = append(out, p[:i+1])
		p = p[i+1:]
	}
	return out
}

// matches reports whether path segments got fit a route template's segments: literal segments
// must be equal, {param} segments match any non-empty segment.
func matches(tmpl, got []string) bool {
	for i, t := range tmpl {
		if strings.HasPrefix(t, "/{") && strings.HasSuffix(t, "}") {
			if got[i] == "/" {
				return false
			}
			continue
		}
		if t != got[i] {
			return false
		}
	}
	return true
}

// rawQuery is the event's query string: rawQueryString as sent, or, for a hand-written event
// that lacks it, the parsed parameters encoded again in a stable order.
func rawQuery(ev events.APIGatewayV2HTTPRequest) string {
	if ev.RawQueryString != "" || len(ev.QueryStringParameters) == 0 {
		return ev.RawQueryString
	}
	keys := make([]string, 0, len(ev.QueryStringParameters))
	for k := range ev.QueryStringParameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		// Payload 2.0 joins repeated parameters with commas.
		for v := range strings.SplitSeq(ev.QueryStringParameters[k], ",") {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	return b.String()
}

// header finds a header in the event's map, whose keys API Gateway lower-cases but a
// hand-written event may not.
func header(h map[string]string, name string) string {
	if v, ok := h[strings.ToLower(name)]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// RequestContext returns the API Gateway request context of a request made by NewRequest.
func RequestContext(ctx context.Context) (events.APIGatewayV2HTTPRequestContext, bool) {
	g, ok := ctx.Value(contextKey{}).(gateway)
	return g.rc, ok
}

// Owner identifies the caller from the authorizer's part of the request context: the IAM
// principal's ARN where the route uses IAM authorization, or the token's subject where it uses
// a JWT authorizer. It is httpapi's Owner on Lambda; ErrNoIdentity makes httpapi answer 401.
func Owner(r *http.Request) (string, error) {
	g, ok := r.Context().Value(contextKey{}).(gateway)
	if !ok || g.rc.Authorizer == nil {
		return "", ErrNoIdentity
	}
	a := g.rc.Authorizer
	if a.IAM != nil && a.IAM.UserARN != "" {
		return a.IAM.UserARN, nil
	}
	if a.JWT != nil && a.JWT.Claims["sub"] != "" {
		return a.JWT.Claims["sub"], nil
	}
	return "", ErrNoIdentity
}

// BaseURL is the absolute URL the caller reached the API at, without a trailing slash: https
// (API Gateway serves nothing else), the domain it called (the execute-api endpoint or a custom
// domain) as the request context names it, and the stage or API mapping prefix it used. It is
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
