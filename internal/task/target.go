package task

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Target selects devices by one of their tags: a device matches when its tag named by Key
// ("tag:Env") has one of Values. A submit's targets are ANDed, each target's values ORed, as
// SSM's own --targets and tag filters are. They are resolved into the task's device ids once,
// when the task is submitted: the task keeps that snapshot and the targets it came from.
type Target struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// Target limits.
const (
	// MaxTargets bounds the targets of one submit, as SSM bounds a command's.
	MaxTargets = 5
	// MaxTargetValues bounds the values of one target.
	MaxTargetValues = 50
	// TagKeyPrefix starts every target key: only tags select devices.
	TagKeyPrefix = "tag:"
	maxTagLength = 128
	maxValueLen  = 256
)

// Tag returns the name of the tag a target selects on ("Env" for "tag:Env").
func (t Target) Tag() string { return strings.TrimPrefix(t.Key, TagKeyPrefix) }

// InventoryDevice is one device of a home's inventory: a managed node on AWS, an entry of the
// inventory file locally.
type InventoryDevice struct {
	ID       string
	Name     string
	Platform string
	// PingStatus is SSM's word for whether the node's agent is reachable ("Online",
	// "ConnectionLost", "Inactive"); the local inventory's devices are always "Online".
	PingStatus string
	Tags       map[string]string
}

// PingOnline is the PingStatus of a device that can be reached.
const PingOnline = "Online"

// Matches reports whether d matches every target (AND), each by one of its values (OR). Both
// inventories follow this rule; on AWS, SSM applies it to its tag filters.
func (d InventoryDevice) Matches(targets []Target) bool {
	for _, t := range targets {
		v, ok := d.Tags[t.Tag()]
		if !ok || !slices.Contains(t.Values, v) {
			return false
		}
	}
	return true
}

// Resolution asks an inventory for the ids of the devices that match Targets, online ones only
// unless IncludeOffline, at most Limit of them (Limit is MaxDevices+1, so that "more than
// MaxDevices" can be told without listing the rest).
type Resolution struct {
	Targets        []Target
	IncludeOffline bool
	Limit          int
}

// InventoryQuery selects a page of an inventory's devices: those matching Targets (every
// device when there are none), online or not.
type InventoryQuery struct {
	Targets []Target
	Limit   int
	Cursor  string
}

// InventoryPage is one page of an inventory; Next is the cursor of the next page, empty on the
// last.
type InventoryPage struct {
	Devices []InventoryDevice
	Next    string
}

// CheckTargets checks the targets of a submit as sent, before they are resolved: deviceIds and
// targets exclude each other, and there are 1 to MaxTargets targets of a "tag:<name>" key and
// 1 to MaxTargetValues values each. It returns nil for a draft without targets.
func CheckTargets(d Draft) error {
	if d.Targets == nil {
		return nil
	}
	var errs []FieldError
	bad := func(pointer, format string, args ...any) {
		errs = append(errs, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
	}
	if d.DeviceIDs != nil {
		bad("/targets", "give either deviceIds or targets, not both")
	}
	switch n := len(d.Targets); {
	case n == 0:
		bad("/targets", "at least one target is required, or leave targets out and give deviceIds")
	case n > MaxTargets:
		bad("/targets", "at most %d targets, got %d", MaxTargets, n)
	}
	errs = append(errs, TargetErrors("/targets", d.Targets)...)
	if len(errs) > 0 {
		return &Error{Code: CodeInvalid, Message: "the request has invalid fields", Fields: errs}
	}
	return nil
}

// TargetErrors checks the keys and values of targets, each named by a pointer under base.
// Listings of an inventory filter with the same rules.
func TargetErrors(base string, targets []Target) []FieldError {
	var errs []FieldError
	bad := func(pointer, format string, args ...any) {
		errs = append(errs, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
	}
	seen := map[string]int{}
	for i, t := range targets {
		p := fmt.Sprintf("%s/%d", base, i)
		tag := t.Tag()
		switch {
		case !strings.HasPrefix(t.Key, TagKeyPrefix) || tag == "":
			bad(p+"/key", "%q is not a target key: use %q followed by a tag name (\"tag:Env\")", truncate(t.Key, 140), TagKeyPrefix)
		case len(tag) > maxTagLength || !utf8.ValidString(tag) || strings.IndexFunc(tag, hidden) >= 0:
			bad(p+"/key", "the tag name must be 1 to %d printable characters", maxTagLength)
		default:
			if first, dup := seen[tag]; dup {
				bad(p+"/key", "tag %q is already a target at %s/%d; list every value in one target", truncate(tag, 140), base, first)
			}
			seen[tag] = i
		}
		switch n := len(t.Values); {
		case n == 0:
			bad(p+"/values", "at least one value is required")
		case n > MaxTargetValues:
			bad(p+"/values", "at most %d values, got %d", MaxTargetValues, n)
		}
		for j, v := range t.Values {
			if v == "" || len(v) > maxValueLen || !utf8.ValidString(v) || strings.IndexFunc(v, hidden) >= 0 {
				bad(fmt.Sprintf("%s/values/%d", p, j), "a value must be 1 to %d printable characters", maxValueLen)
			}
		}
	}
	return errs
}

// CheckResolved checks what resolving targets found: at least one device and at most
// MaxDevices, each a CodeInvalid error that says how many matched.
func CheckResolved(targets []Target, ids []string) error {
	var detail string
	switch n := len(ids); {
	case n == 0:
		detail = "no device matches the targets (" + describeTargets(targets) + ")"
	case n > MaxDevices:
		detail = fmt.Sprintf("more than %d devices match the targets (%s); narrow them", MaxDevices, describeTargets(targets))
	default:
		return nil
	}
	return &Error{Code: CodeInvalid, Message: detail, Fields: []FieldError{{Pointer: "/targets", Detail: detail}}}
}

// describeTargets writes targets the way a person would: tag:Env=prod AND tag:Role=web|db.
func describeTargets(targets []Target) string {
	parts := make([]string, len(targets))
	for i, t := range targets {
		parts[i] = t.Key + "=" + strings.Join(t.Values, "|")
	}
	return strings.Join(parts, " AND ")
}

// SortedTags returns a device's tag names in order, for stable output.
func (d InventoryDevice) SortedTags() []string { return slices.Sorted(maps.Keys(d.Tags)) }
