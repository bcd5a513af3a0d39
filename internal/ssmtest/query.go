package ssmtest

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// filterFunc turns ListCommands / ListCommandInvocations filters into a predicate.
func filterFunc(filters []commandFilter) (func(requested time.Time, doc, status string) bool, *apiError) {
	type check func(time.Time, string, string) bool
	var checks []check
	for _, f := range filters {
		switch f.Key {
		case "InvokedAfter", "InvokedBefore":
			at, err := parseFilterTime(f.Value)
			if err != nil {
				return nil, clientError("ValidationException", "filter %s: %q is not an ISO 8601 time", f.Key, f.Value)
			}
			if f.Key == "InvokedAfter" {
				checks = append(checks, func(t time.Time, _, _ string) bool { return !t.Before(at) })
			} else {
				checks = append(checks, func(t time.Time, _, _ string) bool { return !t.After(at) })
			}
		case "DocumentName":
			v := f.Value
			checks = append(checks, func(_ time.Time, doc, _ string) bool { return doc == v })
		case "Status":
			v := f.Value
			checks = append(checks, func(_ time.Time, _, status string) bool { return status == v })
		default:
			return nil, clientError("InvalidFilterKey", "unknown filter key %q", f.Key)
		}
	}
	return func(t time.Time, doc, status string) bool {
		for _, c := range checks {
			if !c(t, doc, status) {
				return false
			}
		}
		return true
	}, nil
}

func parseFilterTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", v)
}

// query reads the filters, the page size and the page token of a List request.
func (r listCommandsRequest) query() (keep func(requested time.Time, doc, status string) bool, limit, token int, err *apiError) {
	if keep, err = filterFunc(r.Filters); err != nil {
		return nil, 0, 0, err
	}
	if limit, err = maxResults(r.MaxResults); err != nil {
		return nil, 0, 0, err
	}
	if token, err = pageToken(r.NextToken); err != nil {
		return nil, 0, 0, err
	}
	return keep, limit, token, nil
}

func maxResults(v *int) (int, *apiError) {
	if v == nil {
		return 50, nil
	}
	if *v < 1 || *v > 50 {
		return 0, clientError("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 50", *v)
	}
	return *v, nil
}

func token(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("ssmtest:" + strconv.Itoa(n)))
}

func pageToken(t string) (int, *apiError) {
	if t == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(t)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(raw), "ssmtest:"); ok {
			if n, err := strconv.Atoi(rest); err == nil {
				return n, nil
			}
		}
	}
	return 0, clientError("InvalidNextToken", "the NextToken is not valid")
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func orEmpty(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return m
}
