package task

import (
	"fmt"
	"strconv"
	"strings"
)

// maxCursorLength bounds an opaque cursor; the ones stores return are far shorter.
const maxCursorLength = 2048

// QueryParser reads the parameters of a listing as a caller wrote them and collects every bad
// one, so that a query is refused once, naming each parameter (Err). It holds the rules of
// listing queries; adapters only pick the parameters out of their transport.
type QueryParser struct {
	errs []FieldError
}

// Bad records that parameter name is wrong, for a reason only the transport knows (given twice).
func (p *QueryParser) Bad(name, format string, args ...any) {
	p.errs = append(p.errs, FieldError{Pointer: "/" + name, Detail: fmt.Sprintf(format, args...)})
}

// Status reads a task status filter.
func (p *QueryParser) Status(s string) Status {
	if st := Status(s); st.Valid() {
		return st
	}
	p.Bad("status", "%q is not a task status (one of %s)", s, join(Statuses(), ", "))
	return ""
}

// DeviceStatuses reads device status filters, each a list separated by commas
// (status=failed,timed_out), dropping repeats.
func (p *QueryParser) DeviceStatuses(values []string) []DeviceStatus {
	var out []DeviceStatus
	seen := map[DeviceStatus]bool{}
	for _, v := range values {
		for s := range strings.SplitSeq(v, ",") {
			st := DeviceStatus(strings.TrimSpace(s))
			switch {
			case !st.Valid():
				p.Bad("status", "%q is not a device status (one of %s)", s, join(DeviceStatuses(), ", "))
			case !seen[st]:
				seen[st] = true
				out = append(out, st)
			}
		}
	}
	return out
}

// Limit reads a page size: a whole number from 1 to MaxPageSize.
func (p *QueryParser) Limit(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxPageSize {
		p.Bad("limit", "limit must be a whole number from 1 to %d", MaxPageSize)
		return 0
	}
	return n
}

// Cursor reads a cursor. Only a store can tell whether it is one of its own; this refuses what
// no store returns (empty, too long, or not printable ASCII).
func (p *QueryParser) Cursor(s string) string {
	if s == "" || len(s) > maxCursorLength || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		p.Bad("cursor", "%s", cursorRule)
		return ""
	}
	return s
}

// TaskID reads the id of a task named by parameter name (relaunchOf): 1 to 128 printable
// ASCII characters. Whether such a task exists is the listing's to find out.
func (p *QueryParser) TaskID(name, s string) string {
	if s == "" || len(s) > 128 || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		p.Bad(name, "%s must be a task id", name)
		return ""
	}
	return s
}

// Err returns the bad parameters as one error with CodeInvalidQuery, or nil.
func (p *QueryParser) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidQuery, Message: "the query has invalid parameters", Fields: p.errs}
}

const cursorRule = "cursor must be a value taken from a next link"

// BadCursor is the error a store returns for a cursor it did not make, or made for another
// listing.
func BadCursor() error {
	return &Error{Code: CodeInvalidQuery, Message: "the query has invalid parameters",
		Fields: []FieldError{{Pointer: "/cursor", Detail: cursorRule}}}
}

// join joins values with sep.
func join[S ~string](list []S, sep string) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = string(s)
	}
	return strings.Join(parts, sep)
}
