package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// The fuzz targets below run their seed corpora (testdata/fuzz and the f.Add calls) with every
// `go test`; `make fuzz` runs each for a while. Each checks what must hold of any input, not
// only that nothing panics.

// fuzzRules are the local server's rules, without a script root: every scriptUrl of the
// right form is taken to exist.
var fuzzRules = task.Rules{DeviceID: task.LocalDeviceID, CheckScript: func(u string) error {
	if strings.Contains(u, "..") {
		return errors.New("outside the script root")
	}
	return nil
}}

func FuzzDecodeSubmit(f *testing.F) {
	for _, s := range []string{
		`{"deviceIds":["web-1","web-2"],"scriptUrl":"hello.sh","args":["--dry-run"],"timeoutSeconds":60,"maxConcurrency":"10%","maxErrors":"0"}`,
		`{"scriptUrl":"../../etc/passwd","deviceIds":["a"],"scriptUrl":"hello.sh"}`,
		`{"deviceIds":[".",".."],"scriptUrl":"x\u202e.sh"}`,
		`{"deviceIds":"a","scriptUrl":5,"timeoutSeconds":1.5,"maxErrors":0,"x":null}`,
		`[]`, `null`, ``, `{`, `{"a":1} {}`, `{"deviceIds":[null,7,{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, draft, err := decodeSubmit(body)
		var m malformed
		var te *task.Error
		switch {
		case errors.As(err, &m):
			if m == "" {
				t.Fatal("a malformed body with no message")
			}
			return
		case errors.As(err, &te):
			if te.Code != task.CodeInvalid || len(te.Fields) == 0 || len(te.Fields) > maxShapeErrors {
				t.Fatalf("shape error %+v: want invalid with 1 to %d fields", te, maxShapeErrors)
			}
			return
		case err != nil:
			t.Fatalf("decodeSubmit returned %T %v, want a malformed or a task error", err, err)
		}
		r, err := fuzzRules.Validate(draft)
		if err != nil {
			if !errors.As(err, &te) || te.Code != task.CodeInvalid || len(te.Fields) == 0 {
				t.Fatalf("Validate = %v, want invalid with fields", err)
			}
			if n := len(te.Fields); n > task.MaxDeviceIDErrors+10 {
				t.Fatalf("%d field errors: the list is not capped", n)
			}
			for _, fe := range te.Fields {
				if !strings.HasPrefix(fe.Pointer, "/") || fe.Detail == "" {
					t.Fatalf("field error %+v", fe)
				}
			}
			return
		}
		// What validation accepts is a request the runner can take as it is.
		if len(r.DeviceIDs) == 0 || len(r.DeviceIDs) > task.MaxDevices || r.Concurrency() < 1 || r.TimeoutSeconds < 1 {
			t.Fatalf("accepted %+v", r)
		}
		seen := map[string]bool{}
		for _, id := range r.DeviceIDs {
			if !task.ValidLocalID(id) || seen[id] {
				t.Fatalf("accepted device id %q (duplicate %v)", id, seen[id])
			}
			seen[id] = true
		}
		if !utf8.ValidString(r.ScriptURL) || strings.IndexFunc(r.ScriptURL, hidden) >= 0 {
			t.Fatalf("accepted scriptUrl %q", r.ScriptURL)
		}
	})
}

// hidden is the domain's rule for characters a scriptUrl may not hold.
func hidden(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

func FuzzQueryParameters(f *testing.F) {
	for _, s := range []string{
		"status=running&limit=10&cursor=abc", "status=failed,timed_out&status=cancelled", "limit=0", "limit=1001",
		"limit=1&limit=2", "cursor=%00", "cursor=", "status=", "status=%20failed%20,", "limit=-1&status=nope",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // the server answers such a query 400 before any handler
		}
		// As the listings read them: GET /tasks one task status, GET …/devices device statuses.
		var p task.QueryParser
		var status task.Status
		if s, ok := single(&p, q, "status"); ok {
			status = p.Status(s)
		}
		limit, cursor := pageParams(&p, q)
		statuses := p.DeviceStatuses(q["status"])
		if status != "" && !status.Valid() {
			t.Fatalf("task status %q", status)
		}
		if limit < 0 || limit > task.MaxPageSize {
			t.Fatalf("limit %d", limit)
		}
		if cursor != "" && strings.IndexFunc(cursor, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			t.Fatalf("cursor %q", cursor)
		}
		seen := map[task.DeviceStatus]bool{}
		for _, s := range statuses {
			if !s.Valid() || seen[s] {
				t.Fatalf("device statuses %v", statuses)
			}
			seen[s] = true
		}
		err = p.Err()
		var te *task.Error
		if err != nil && (!errors.As(err, &te) || te.Code != task.CodeInvalidQuery || len(te.Fields) == 0) {
			t.Fatalf("Err = %v, want an invalid query naming its parameters", err)
		}
		if te != nil {
			for _, e := range te.Fields {
				if !strings.HasPrefix(e.Pointer, "/") || e.Detail == "" {
					t.Fatalf("query error %+v", e)
				}
			}
		}
	})
}

func FuzzPreferWait(f *testing.F) {
	for _, s := range []string{"wait=5", "respond-async, wait=10", `wait="3"`, "wait=99999999999999999999", "WAIT = 7 ; x", "wait=-1", "wait", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Prefer": {header}}}
		seconds, ok := preferWait(r)
		if seconds < 0 || seconds > api.MaxWaitSeconds || (!ok && seconds != 0) {
			t.Fatalf("preferWait(%q) = %d, %v", header, seconds, ok)
		}
	})
}

func FuzzIfNoneMatch(f *testing.F) {
	for _, s := range []string{`"3"`, `W/"3"`, `"1", "3"`, "*", `"03"`, `3`, ``, `,,,`} {
		f.Add(s, int64(3))
	}
	f.Fuzz(func(t *testing.T, header string, version int64) {
		r := &http.Request{Header: http.Header{"If-None-Match": {header}}}
		present, matched := noneMatch(r, version)
		if !present {
			t.Fatal("a sent If-None-Match was not seen")
		}
		// A match is the current tag, weak or strong, or a bare *, and nothing else.
		want := false
		for tag := range strings.SplitSeq(header, ",") {
			tag = strings.TrimSpace(tag)
			want = want || tag == "*" || strings.TrimPrefix(tag, "W/") == `"`+strconv.FormatInt(version, 10)+`"`
		}
		if matched != want {
			t.Fatalf("noneMatch(%q, %d) = %v, want %v", header, version, matched, want)
		}
	})
}

func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"7", "0", "1000", "-1", "9223372036854775808", "1e3", " 7", ""} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, header, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: url.Values{"lastEventId": {query}}.Encode()}}
		if header != "" {
			r.Header.Set("Last-Event-ID", header)
		}
		n, err := lastEventID(r)
		if err != nil {
			if n != 0 || !strings.Contains(err.Error(), "event id") {
				t.Fatalf("lastEventID = %d, %v", n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("lastEventID = %d", n)
		}
		// The header wins over the query parameter; neither means 0.
		used := header
		if used == "" {
			used = query
		}
		want := int64(0)
		if used != "" {
			want, _ = strconv.ParseInt(used, 10, 64)
		}
		if n != want {
			t.Fatalf("lastEventID(%q, %q) = %d, want %d", header, query, n, want)
		}
	})
}
