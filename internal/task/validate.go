package task

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Submit limits.
const (
	MaxDevices        = 10000
	MaxArgs           = 100
	MaxArgLength      = 4096
	MaxTimeoutSeconds = 172800 // 48 h, SSM's longest execution timeout
	DefaultTimeout    = 3600
	// DefaultDeliveryTimeout is how long a device may take to pick a task up when the request
	// does not say, or the task's timeout when that is shorter.
	DefaultDeliveryTimeout = 600
	DefaultConcurrency     = "50"
	// DefaultMaxErrors lets every device run to the end: a task with failed devices completes
	// and its result names them. Set maxErrors to stop early instead.
	DefaultMaxErrors = "100%"
)

// IDRule is a rule every device id of a deployment follows. *regexp.Regexp is one; the two
// fleetrun uses are written out by hand, since each submit checks up to 10,000 ids against it,
// and compiling their regular expressions took most of a Lambda function's own start-up.
type IDRule interface {
	MatchString(s string) bool
	// String is the rule as a regular expression, for error messages.
	String() string
}

// LocalDeviceID is the rule of device ids of the local runner: ^[A-Za-z0-9._:-]{1,128}$. "."
// and ".." match it but are never device ids (see ValidLocalID).
var LocalDeviceID IDRule = localDeviceID{}

type localDeviceID struct{}

func (localDeviceID) String() string { return `^[A-Za-z0-9._:-]{1,128}$` }

// MatchString implements IDRule.
func (localDeviceID) MatchString(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }

// ValidLocalID reports whether s is a valid id of the local runner: it matches LocalDeviceID
// and is not "." or "..". The runner makes every device id, and every task id, one element of a
// path under its data directory, so this one rule decides both which device ids a submit may
// name and which names the runner may use as directories.
func ValidLocalID(s string) bool {
	return LocalDeviceID.MatchString(s) && !dotName(s)
}

// dotName reports whether s is "." or "..": names of directories on every system, which no
// device may take, wherever it runs.
func dotName(s string) bool { return s == "." || s == ".." }

// MaxDeviceIDErrors bounds the device ids a validation error lists one by one; the rest are
// counted, so that 10,000 bad ids make a short answer.
const MaxDeviceIDErrors = 100

// ManagedNodeID is the device id rule on AWS: an SSM managed node (EC2 instance or hybrid
// node), ^(i|mi)-[0-9a-f]{8,17}$.
var ManagedNodeID IDRule = managedNodeID{}

type managedNodeID struct{}

func (managedNodeID) String() string { return `^(i|mi)-[0-9a-f]{8,17}$` }

// MatchString implements IDRule.
func (managedNodeID) MatchString(s string) bool {
	rest, ok := strings.CutPrefix(s, "i-")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "mi-"); !ok {
			return false
		}
	}
	if len(rest) < 8 || len(rest) > 17 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// The rules of maxConcurrency and maxErrors, compiled on first use rather than when a
// function starts.
var (
	concurrencyRule = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([1-9][0-9]*|([1-9][0-9]?|100)%)$`) })
	maxErrorsRule   = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(0|[1-9][0-9]*|([0-9]|[1-9][0-9]|100)%)$`)
	})
)

// Rules are the parts of submit validation that depend on where fleetrun runs.
type Rules struct {
	// DeviceID is the rule every device id must follow.
	DeviceID IDRule
	// CheckScript returns an error whose text is shown to the caller when url is not a script
	// this deployment will run. It must not fetch anything.
	CheckScript func(url string) error
	// CheckWebhookURL returns an error whose text is shown to the caller when url is not one
	// this deployment will post webhooks to (its scheme, or an address it must not call). Nil
	// means webhooks are off: a request with notify is refused.
	CheckWebhookURL func(url string) error
}

// Draft is a request as the caller sent it, before validation. A nil setting was left out and
// gets its default; a setting that is present must be valid, so an explicit 0 or "" is refused
// rather than taken for "the default".
type Draft struct {
	DeviceIDs              []string
	ScriptURL              string
	Args                   []string
	TimeoutSeconds         *int
	DeliveryTimeoutSeconds *int
	MaxConcurrency         *string
	MaxErrors              *string
	// Targets, when not nil, are the tag targets the devices were resolved from (CheckTargets,
	// then the engine's inventory fills DeviceIDs); IncludeOffline asks for offline devices too.
	Targets        []Target
	IncludeOffline bool
	// Notify is the webhook subscription, nil when the caller sent none.
	Notify *NotifyDraft
}

// Validate checks a submitted request and returns it with its defaults filled in, or an *Error
// with code CodeInvalid that lists every bad field by JSON pointer. It is the only place where
// submit rules live: adapters decode, the engine stores what Validate returns.
func (r Rules) Validate(d Draft) (Request, error) {
	var errs []FieldError
	bad := func(pointer, format string, args ...any) {
		errs = append(errs, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
	}

	switch n := len(d.DeviceIDs); {
	case n == 0:
		bad("/deviceIds", "at least one device id is required")
	case n > MaxDevices:
		bad("/deviceIds", "at most %d devices per task, got %d", MaxDevices, n)
	default:
		seen := make(map[string]int, n)
		badIDs := 0
		badID := func(i int, format string, args ...any) {
			if badIDs++; badIDs <= MaxDeviceIDErrors {
				bad(fmt.Sprintf("/deviceIds/%d", i), format, args...)
			}
		}
		for i, id := range d.DeviceIDs {
			switch first, dup := seen[id]; {
			case r.DeviceID != nil && !r.DeviceID.MatchString(id):
				badID(i, "%q is not a valid device id (must match %s)", truncate(id, 140), r.DeviceID)
			case dotName(id):
				badID(i, "%q is not a valid device id (\".\" and \"..\" name directories)", id)
			case dup:
				badID(i, "%q is a duplicate of /deviceIds/%d", id, first)
			default:
				seen[id] = i
			}
		}
		if badIDs > MaxDeviceIDErrors {
			bad("/deviceIds", "%d more device ids are invalid or duplicated; only the first %d are listed",
				badIDs-MaxDeviceIDErrors, MaxDeviceIDErrors)
		}
	}

	switch {
	case strings.TrimSpace(d.ScriptURL) == "":
		bad("/scriptUrl", "scriptUrl is required")
	case !utf8.ValidString(d.ScriptURL):
		bad("/scriptUrl", "scriptUrl must be valid UTF-8")
	case strings.IndexFunc(d.ScriptURL, hidden) >= 0:
		c, _ := utf8.DecodeRuneInString(d.ScriptURL[strings.IndexFunc(d.ScriptURL, hidden):])
		bad("/scriptUrl", "scriptUrl may not contain control or formatting characters such as %U: "+
			"they make what a log or a screen shows of it differ from what runs", c)
	case r.CheckScript != nil:
		if err := r.CheckScript(d.ScriptURL); err != nil {
			bad("/scriptUrl", "%s", err.Error())
		}
	}

	if len(d.Args) > MaxArgs {
		bad("/args", "at most %d args, got %d", MaxArgs, len(d.Args))
	}
	for i, a := range d.Args {
		if len(a) > MaxArgLength {
			bad(fmt.Sprintf("/args/%d", i), "an arg may be at most %d bytes", MaxArgLength)
		}
		if strings.ContainsRune(a, 0) {
			bad(fmt.Sprintf("/args/%d", i), "an arg may not contain a NUL byte")
		}
	}

	if d.IncludeOffline && d.Targets == nil {
		bad("/includeOffline", "includeOffline applies to targets only")
	}

	req := Request{DeviceIDs: d.DeviceIDs, ScriptURL: d.ScriptURL, Args: d.Args, Targets: d.Targets,
		IncludeOffline: d.IncludeOffline,
		TimeoutSeconds: DefaultTimeout, MaxConcurrency: DefaultConcurrency, MaxErrors: DefaultMaxErrors}
	if req.Args == nil {
		req.Args = []string{}
	}
	if d.TimeoutSeconds != nil {
		req.TimeoutSeconds = *d.TimeoutSeconds
		if req.TimeoutSeconds < 1 || req.TimeoutSeconds > MaxTimeoutSeconds {
			bad("/timeoutSeconds", "must be between 1 and %d; leave it out for the default (%d)", MaxTimeoutSeconds, DefaultTimeout)
		}
	}
	// The delivery timeout defaults to DefaultDeliveryTimeout, or to the task's timeout when
	// that is shorter, and may not exceed it: a device that never picks the task up cannot
	// hold it past its deadline anyway.
	req.DeliveryTimeoutSeconds = min(DefaultDeliveryTimeout, max(req.TimeoutSeconds, 1))
	if d.DeliveryTimeoutSeconds != nil {
		req.DeliveryTimeoutSeconds = *d.DeliveryTimeoutSeconds
		// Against a timeout that is itself invalid, only the timeout is reported.
		upper := req.TimeoutSeconds
		if upper < 1 || upper > MaxTimeoutSeconds {
			upper = MaxTimeoutSeconds
		}
		if req.DeliveryTimeoutSeconds < 1 || req.DeliveryTimeoutSeconds > upper {
			bad("/deliveryTimeoutSeconds", "must be between 1 and the task's timeoutSeconds (%d); leave it out for the default (%d, or timeoutSeconds when shorter)",
				req.TimeoutSeconds, DefaultDeliveryTimeout)
		}
	}
	for _, set := range []struct {
		pointer string
		given   *string
		value   *string
		rule    func() *regexp.Regexp
		explain string
	}{
		{"/maxConcurrency", d.MaxConcurrency, &req.MaxConcurrency, concurrencyRule,
			`must be a count of at least 1 ("10") or a percentage from 1% to 100% ("10%")`},
		{"/maxErrors", d.MaxErrors, &req.MaxErrors, maxErrorsRule,
			`must be a count ("0") or a percentage from 0% to 100% ("10%")`},
	} {
		switch {
		case set.given == nil:
		case *set.given == "":
			bad(set.pointer, "must not be empty; leave it out for the default (%q)", *set.value)
		case !set.rule().MatchString(*set.given):
			bad(set.pointer, "%s", set.explain)
		default:
			*set.value = *set.given
		}
	}

	if d.Notify != nil {
		req.Notify = r.validateNotify(*d.Notify, bad)
	}

	if len(errs) > 0 {
		return Request{}, &Error{Code: CodeInvalid, Message: "the request has invalid fields", Fields: errs}
	}
	return req, nil
}

// validateNotify checks a webhook subscription and returns it with its default events.
func (r Rules) validateNotify(n NotifyDraft, bad func(pointer, format string, args ...any)) *Notify {
	out := &Notify{URL: n.URL, Events: DefaultWebhookTypes()}
	switch {
	case r.CheckWebhookURL == nil:
		bad("/notify", "this deployment sends no webhooks; leave notify out")
	case n.URL == "":
		bad("/notify/url", "url is required")
	case len(n.URL) > MaxWebhookURLLength:
		bad("/notify/url", "url may be at most %d bytes", MaxWebhookURLLength)
	case !utf8.ValidString(n.URL) || strings.IndexFunc(n.URL, hidden) >= 0:
		bad("/notify/url", "url must be valid UTF-8 without control or formatting characters")
	default:
		if err := r.CheckWebhookURL(n.URL); err != nil {
			bad("/notify/url", "%s", err.Error())
		}
	}
	if n.Events == nil {
		return out
	}
	if len(n.Events) == 0 {
		bad("/notify/events", "name at least one event, or leave events out for %q", WebhookTaskFinished)
	}
	out.Events = make([]WebhookType, 0, len(n.Events))
	for i, e := range n.Events {
		switch typ := WebhookType(e); {
		case !typ.Valid():
			bad(fmt.Sprintf("/notify/events/%d", i), "%q is not an event (one of %s)", truncate(e, 64), join(WebhookTypes(), ", "))
		case slices.Contains(out.Events, typ):
			bad(fmt.Sprintf("/notify/events/%d", i), "%q is named twice", e)
		default:
			out.Events = append(out.Events, typ)
		}
	}
	return out
}

// Concurrency resolves a task's maxConcurrency to a number of devices, at least 1.
func (r Request) Concurrency() int {
	n := resolve(r.MaxConcurrency, len(r.DeviceIDs), true)
	if n < 1 {
		n = 1
	}
	return n
}

// ErrorBudget resolves a task's maxErrors to the number of device errors tolerated; one more
// than that stops the task.
func (r Request) ErrorBudget() int {
	if r.MaxErrors == "" {
		return len(r.DeviceIDs)
	}
	return resolve(r.MaxErrors, len(r.DeviceIDs), false)
}

// resolve turns "n" or "p%" of total into a count, rounding a share up or down.
func resolve(spec string, total int, roundUp bool) int {
	if p, ok := strings.CutSuffix(spec, "%"); ok {
		pct, _ := strconv.Atoi(p)
		n := total * pct
		if roundUp {
			return (n + 99) / 100
		}
		return n / 100
	}
	n, _ := strconv.Atoi(spec)
	return n
}

// hidden reports whether r is a control character or an invisible formatting one (bidi
// overrides, zero-width spaces, the byte order mark): characters that make a scriptUrl read
// differently from what runs.
func hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
