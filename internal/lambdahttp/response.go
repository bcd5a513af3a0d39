package lambdahttp

import (
	"bytes"
	"encoding/base64"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// responseWriter buffers a response for a route API Gateway buffers, which takes a Lambda's
// answer whole.
type responseWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
	// done is called by the first Flush of a non-empty body: a buffered response cannot send
	// a part, so it ends the request instead (see the package documentation).
	done func()
}

func newResponseWriter(done func()) *responseWriter {
	return &responseWriter{header: make(http.Header), done: done}
}

// Header implements http.ResponseWriter.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter. Informational statuses cannot be sent through
// API Gateway and are dropped; the first final status wins, as in net/http.
func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 || code > 999 {
		return
	}
	w.status = code
}

// Write implements http.ResponseWriter.
func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.header.Get("Content-Type") == "" && w.body.Len() == 0 && len(b) > 0 {
		w.header.Set("Content-Type", http.DetectContentType(b))
	}
	return w.body.Write(b)
}

// Flush implements http.Flusher: it ends the response once there is something to send.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.body.Len() > 0 && w.done != nil {
		w.done()
		w.done = nil
	}
}

// written reports whether the handler wrote a status or a body.
func (w *responseWriter) written() bool { return w.status != 0 || w.body.Len() > 0 }

// response is the buffered answer as payload 1.0 expects it (see gatewayHeaders for the
// headers), with a body in base64 unless its media type is text and it is valid UTF-8. A large
// text body that JSON escaping would make longer than base64 does (one full of newlines,
// quotes or angle brackets, each of which takes two to six bytes as a JSON string) is sent in
// base64 too, so that no body grows by more than a third on its way through Lambda's 6 MB
// response limit; small ones stay readable in logs. The API's binary media types (*/*) make
// API Gateway decode a base64 body before it answers.
func (w *responseWriter) response() events.APIGatewayProxyResponse {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	resp := events.APIGatewayProxyResponse{StatusCode: status}
	resp.Headers, resp.MultiValueHeaders = gatewayHeaders(w.header)
	b := w.body.Bytes()
	if textual(w.header.Get("Content-Type")) && utf8.Valid(b) &&
		(len(b) <= readableLimit || jsonStringLen(b) <= base64.StdEncoding.EncodedLen(len(b))) {
		resp.Body = string(b)
	} else if len(b) > 0 {
		resp.Body = base64.StdEncoding.EncodeToString(b)
		resp.IsBase64Encoded = true
	}
	return resp
}

// gatewayHeaders splits a response's header for API Gateway: each field with its values
// joined by commas in headers, except Set-Cookie, whose values cannot be joined, in
// multiValueHeaders. Hop-by-hop fields are left out: API Gateway runs its own connections to
// the caller.
func gatewayHeaders(h http.Header) (map[string]string, map[string][]string) {
	headers := make(map[string]string, len(h))
	var multi map[string][]string
	for k, vs := range h {
		switch {
		case len(vs) == 0, strings.EqualFold(k, "Connection"):
		case strings.EqualFold(k, "Set-Cookie"):
			multi = map[string][]string{"Set-Cookie": slices.Clone(vs)}
		default:
			headers[k] = strings.Join(vs, ", ")
		}
	}
	return headers, multi
}

// textual reports whether a media type is text that API Gateway may carry as a JSON string.
func textual(contentType string) bool {
	if contentType == "" {
		return true // no body, or nothing that says otherwise; the UTF-8 check decides
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") {
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/javascript",
		"application/x-www-form-urlencoded", "application/yaml":
		return true
	}
	return false
}

// readableLimit is the size up to which a text body is always sent as text.
const readableLimit = 64 << 10

// jsonStringLen is how many bytes b takes inside a JSON string as encoding/json writes it,
// which is how aws-lambda-go sends the response: two for a quote, a backslash and the common
// control characters, six for other control characters, for <, > and & (escaped for HTML) and
// for U+2028 and U+2029, one for every other byte.
func jsonStringLen(b []byte) int {
	n := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == '\u2028' || r == '\u2029' {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}
