package httpapi

import (
	"net"
	"net/http"
	"strings"
)

// The BaseURL functions decide where Location headers and links point. None of them trusts
// what a caller may set: a Host header or X-Forwarded-* reaches a link only through
// ForwardedBaseURL, which a server uses only when a reverse proxy it trusts sets them.

// ListenerBaseURL is the default BaseURL: the address the request's connection arrived at (the
// address the server listens on, or the interface it accepted on when it listens on all of
// them), with https when the connection is TLS. A request that came through no listener (a
// handler called directly) falls back on its Host, which ServeHTTP has checked.
func ListenerBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a.Network() == "tcp" {
		return scheme + "://" + a.String()
	}
	return scheme + "://" + r.Host
}

// PublicURL returns a BaseURL that is always base, such as "https://fleet.example.com": for a
// server whose callers reach it under a name of its own.
func PublicURL(base string) func(*http.Request) string {
	return func(*http.Request) string { return base }
}

// ForwardedBaseURL is the BaseURL behind a trusted reverse proxy: the scheme from
// X-Forwarded-Proto (http or https) and the host from X-Forwarded-Host, or from Host when the
// proxy passes the caller's on. A value that is not a plain scheme or host is ignored.
func ForwardedBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); p != "" {
		switch p = strings.ToLower(strings.TrimSpace(p)); p {
		case "http", "https":
			scheme = p
		}
	}
	host := r.Host
	if h, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ","); validHost(strings.TrimSpace(h)) {
		host = strings.TrimSpace(h)
	}
	return scheme + "://" + host
}

// validHost reports whether h is a Host header value that can be put in a URL: a DNS name, an
// IPv4 address or a bracketed IPv6 address, with an optional port.
func validHost(h string) bool {
	if h == "" || len(h) > 262 {
		return false
	}
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		host, port = h[1:end], h[end+1:]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return false
		}
		if port == "" {
			return true
		}
		if port[0] != ':' {
			return false
		}
		return validPort(port[1:])
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if !validPort(port) {
			return false
		}
	}
	return validName(host)
}

// validPort reports whether p is a port number, 0 to 65535.
func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := range len(p) {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

// validName reports whether s is a host name (labels of letters, digits, '-' and '_', at most
// 63 characters each, 253 in all, an optional final dot) or an IPv4 address, which has the
// same shape.
func validName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
