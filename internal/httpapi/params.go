package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// single returns the one value of query parameter name, and whether it was given. A parameter
// given twice is the transport's mistake, recorded in p.
func single(p *task.QueryParser, q url.Values, name string) (string, bool) {
	vs, ok := q[name]
	if !ok {
		return "", false
	}
	if len(vs) > 1 {
		p.Bad(name, "%s may be given only once", name)
		return "", false
	}
	return vs[0], true
}

// pageParams reads the limit and cursor of a listing.
func pageParams(p *task.QueryParser, q url.Values) (limit int, cursor string) {
	if s, ok := single(p, q, "limit"); ok {
		limit = p.Limit(s)
	}
	if s, ok := single(p, q, "cursor"); ok {
		cursor = p.Cursor(s)
	}
	return limit, cursor
}

// join joins statuses with sep.
func join[S ~string](list []S, sep string) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = string(s)
	}
	return strings.Join(parts, sep)
}

// preferWait returns the wait=N preference of the Prefer header (RFC 7240), capped at
// api.MaxWaitSeconds. ok is false when the request did not ask to wait.
func preferWait(r *http.Request) (seconds int, ok bool) {
	for _, header := range r.Header.Values("Prefer") {
		for pref := range strings.SplitSeq(header, ",") {
			pref, _, _ = strings.Cut(pref, ";")
			name, value, found := strings.Cut(strings.TrimSpace(pref), "=")
			if !found || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(value), `"`), 10, 63)
			if err != nil {
				continue
			}
			return int(min(n, api.MaxWaitSeconds)), true
		}
	}
	return 0, false
}

// noneMatch evaluates If-None-Match against a task's version, with the weak comparison RFC 9110
// prescribes for it. present is false when the header was not sent.
func noneMatch(r *http.Request, version int64) (present, matched bool) {
	values := r.Header.Values("If-None-Match")
	if len(values) == 0 {
		return false, false
	}
	current := etag(version)
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == current {
				return true, true
			}
		}
	}
	return true, false
}
