package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Relay sends a request on to the API with the credentials of whoever runs the relay: a
// client.Client's Request, which signs with SigV4 or adds a bearer token. path is below the
// API's root, escaped.
type Relay interface {
	Request(ctx context.Context, method, path, rawQuery string, header http.Header, body []byte) (*http.Request, error)
	// Authenticated reports whether the relay adds credentials of its own; when it does not,
	// the page's own bearer token is passed on.
	Authenticated() bool
}

// ProxyConfig configures Proxy. Endpoint and Relay are required.
type ProxyConfig struct {
	// Endpoint is the API's URL, such as https://abc123.execute-api.eu-west-1.amazonaws.com/prod.
	// Its path is kept: the proxy answers below the same path, so that the path of every link
	// the API returns is a path of the proxy too.
	Endpoint *url.URL
	Relay    Relay
	// Transport sends the relayed requests; nil is http.DefaultTransport. It must not time
	// out a whole response: event streams last for minutes.
	Transport http.RoundTripper
	// MaxBodyBytes bounds a relayed request body; the default is 4 MiB.
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// relayedHeaders are the request headers the page's calls may carry on to the API. Cookies,
// the browser's own headers and anything else stay behind.
var relayedHeaders = []string{"Accept", "Content-Type", "Idempotency-Key", "If-None-Match", "Prefer",
	"Last-Event-ID", "X-Request-Id"}

// hopHeaders are the response headers that belong to one connection, not to the answer.
var hopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true, "Te": true, "Trailer": true, "Content-Length": true}

// Proxy serves the dashboard on a loopback address and relays its API calls to cfg.Endpoint
// with the Relay's credentials, streaming answers through as they come, so that event streams
// stay live. A browser never holds the credentials, and never talks to another host: where
// the API answers an output request with a redirect to storage (a presigned URL on AWS), the
// proxy follows it and streams the body itself.
//
// Because whatever reaches it is sent with the operator's identity, it answers only requests
// addressed to a loopback host (a page elsewhere cannot rebind a name of its own to it), and
// refuses cross-origin requests that change anything (http.CrossOriginProtection).
func Proxy(cfg ProxyConfig) http.Handler {
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	root := strings.TrimSuffix(cfg.Endpoint.EscapedPath(), "/")
	p := &proxy{cfg: cfg, root: root, hc: &http.Client{Transport: cfg.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	mux := http.NewServeMux()
	mux.Handle("GET "+root+Path, http.StripPrefix(root+strings.TrimSuffix(Path, "/"), Handler()))
	mux.HandleFunc("GET /{$}", p.home)
	mux.HandleFunc(root+"/", p.relay)
	return loopbackOnly(http.NewCrossOriginProtection().Handler(mux))
}

type proxy struct {
	cfg  ProxyConfig
	root string
	hc   *http.Client
}

// home redirects a browser at / to the dashboard.
func (p *proxy) home(w http.ResponseWriter, r *http.Request) {
	if p.root != "" || WantsPage(r) {
		http.Redirect(w, r, p.root+Path, http.StatusSeeOther)
		return
	}
	p.relay(w, r)
}

// relay sends r on to the API and streams the answer back.
func (p *proxy) relay(w http.ResponseWriter, r *http.Request) {
	if r.URL.EscapedPath() == p.root+"/" && WantsPage(r) {
		http.Redirect(w, r, p.root+Path, http.StatusSeeOther)
		return
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes))
		if err != nil {
			http.Error(w, "request body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
	}
	header := http.Header{}
	for _, k := range relayedHeaders {
		if vs := r.Header.Values(k); len(vs) > 0 {
			header[k] = vs
		}
	}
	if !p.cfg.Relay.Authenticated() && r.Header.Get("Authorization") != "" {
		header.Set("Authorization", r.Header.Get("Authorization"))
	}
	if len(body) == 0 {
		body = nil
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), p.root)
	out, err := p.cfg.Relay.Request(r.Context(), r.Method, path, r.URL.RawQuery, header, body)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	res, err := p.hc.Do(out)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusSeeOther && r.Method == http.MethodGet && strings.HasSuffix(path, "/output") {
		// A large output is in storage, behind a presigned URL: fetch it here, without the
		// relay's credentials (the URL carries its own), so the page stays on one host.
		loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
		if err == nil {
			var req *http.Request
			if req, err = http.NewRequestWithContext(r.Context(), http.MethodGet, loc.String(), nil); err == nil {
				var stored *http.Response
				if stored, err = p.hc.Do(req); err == nil {
					defer stored.Body.Close()
					res = stored
				}
			}
		}
		if err != nil {
			p.fail(w, r, fmt.Errorf("read the output in storage: %w", err))
			return
		}
	}
	for k, vs := range res.Header {
		if !hopHeaders[k] {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(res.StatusCode)
	if err := stream(w, res.Body); err != nil && r.Context().Err() == nil {
		p.cfg.Logger.Warn("relaying an answer failed", "path", r.URL.Path, "err", err)
	}
}

// stream copies body to w, flushing each read at once: an event stream's events must reach
// the page as they are sent, not when a buffer fills.
func stream(w http.ResponseWriter, body io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// fail answers a request the API could not be asked, or did not answer, with a 502 problem.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	p.cfg.Logger.Warn("relaying a request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, `{"type":"about:blank","title":"The API cannot be reached","status":502,"detail":%q}`,
		"fleetrun ui could not reach "+p.cfg.Endpoint.Redacted()+": "+err.Error())
}

// loopbackOnly answers 421 to a request whose Host is not a loopback address or "localhost".
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !LoopbackHost(r.Host) {
			http.Error(w, "fleetrun ui answers only requests for a loopback address", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LoopbackHost reports whether hostport (host, or host:port) names this machine's loopback
// interface: "localhost", or a loopback IP address.
func LoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
