package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// maxCursorLength bounds an opaque cursor; real ones are far shorter.
const maxCursorLength = 2048

// queryErrors collects the bad query parameters of one request. Query parameters are checked
// here, before the engine is called, so a bad one is always a 400 naming the parameter.
type queryErrors []api.FieldError

func (e *queryErrors) add(name, format string, args ...any) {
	*e = append(*e, api.FieldError{Pointer: "/" + name, Detail: fmt.Sprintf(format, args...)})
}

// single returns the one value of parameter name, and whether it was given.
func (e *queryErrors) single(q url.Values, name string) (string, bool) {
	vs, ok := q[name]
	if !ok {
		return "", false
	}
	if len(vs) > 1 {
		e.add(name, "%s may be given only once", name)
		return "", false
	}
	return vs[0], true
}

// page reads the limit and cursor of a listing.
func (e *queryErrors) page(q url.Values) (limit int, cursor string) {
	if s, ok := e.single(q, "limit"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > task.MaxPageSize {
			e.add("limit", "limit must be a whole number from 1 to %d", task.MaxPageSize)
		} else {
			limit = n
		}
	}
	if s, ok := e.single(q, "cursor"); ok {
		if !validCursor(s) {
			e.add("cursor", "cursor must be a value taken from a next link")
		} else {
			cursor = s
		}
	}
	return limit, cursor
}

func validCursor(s string) bool {
	if s == "" || len(s) > maxCursorLength {
		return false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// taskStatus reads the status filter of GET /tasks: one task status.
func (e *queryErrors) taskStatus(q url.Values) task.Status {
	s, ok := e.single(q, "status")
	if !ok {
		return ""
	}
	if st := task.Status(s); st.Valid() {
		return st
	}
	e.add("status", "%q is not a task status (one of %s)", s, join(task.Statuses(), ", "))
	return ""
}

// deviceStatuses reads the status filter of GET /tasks/{id}/devices: device statuses separated
// by commas (status=failed,timed_out), in one parameter or several.
func (e *queryErrors) deviceStatuses(q url.Values) []task.DeviceStatus {
	vs, ok := q["status"]
	if !ok {
		return nil
	}
	var out []task.DeviceStatus
	seen := map[task.DeviceStatus]bool{}
	for _, v := range vs {
		for s := range strings.SplitSeq(v, ",") {
			st := task.DeviceStatus(strings.TrimSpace(s))
			switch {
			case !st.Valid():
				e.add("status", "%q is not a device status (one of %s)", s, join(task.DeviceStatuses(), ", "))
			case !seen[st]:
				seen[st] = true
				out = append(out, st)
			}
		}
	}
	return out
}

// join joins statuses with sep.
func join[S ~string](list []S, sep string) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = string(s)
	}
	return strings.Join(parts, sep)
}

// badQuery answers 400 for the collected query errors.
func (h *handler) badQuery(w http.ResponseWriter, r *http.Request, errs queryErrors) {
	p := problemFor(http.StatusBadRequest, api.ProblemMalformed, "the query has invalid parameters")
	p.Errors = errs
	h.problem(w, r, p)
}

// badCursor answers 400 for a cursor the store could not read: it is part of the query, so a
// bad one is the caller's malformed request, not an invalid body.
func (h *handler) badCursor(w http.ResponseWriter, r *http.Request, err error) {
	detail := "cursor must be a value taken from a next link"
	var te *task.Error
	if errors.As(err, &te) && len(te.Fields) > 0 {
		var errs queryErrors
		for _, f := range te.Fields {
			errs = append(errs, api.FieldError{Pointer: f.Pointer, Detail: f.Detail})
		}
		h.badQuery(w, r, errs)
		return
	}
	h.badQuery(w, r, queryErrors{{Pointer: "/cursor", Detail: detail}})
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
