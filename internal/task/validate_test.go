package task_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/task"
)

var (
	localRules = task.Rules{DeviceID: task.LocalDeviceID, CheckScript: func(url string) error {
		if strings.Contains(url, "..") {
			return errors.New("scriptUrl must stay under the script root")
		}
		return nil
	}}
	awsRules = task.Rules{DeviceID: task.ManagedNodeID}
)

// validRequest is a request every rule set accepts, with every optional field set.
func validRequest() task.Draft {
	return task.Draft{
		DeviceIDs:              []string{"i-0123456789abcdef0", "mi-0123456789abcdef0"},
		ScriptURL:              "scripts/patch.sh",
		Args:                   []string{"--dry-run"},
		TimeoutSeconds:         new(60),
		DeliveryTimeoutSeconds: new(30),
		MaxConcurrency:         new("10%"),
		MaxErrors:              new("0"),
	}
}

func deviceIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%017x", i)
	}
	return ids
}

func TestValidateReportsEveryBadField(t *testing.T) {
	t.Parallel()
	type field struct{ pointer, detail string }
	tests := []struct {
		name   string
		rules  task.Rules
		change func(r *task.Draft)
		// want lists every field error expected; detail is a substring of the reported detail.
		want []field
	}{
		{"no devices", localRules, func(r *task.Draft) { r.DeviceIDs = nil },
			[]field{{"/deviceIds", "at least one"}}},
		{"empty device list", localRules, func(r *task.Draft) { r.DeviceIDs = []string{} },
			[]field{{"/deviceIds", "at least one"}}},
		{"10,001 devices", awsRules, func(r *task.Draft) { r.DeviceIDs = deviceIDs(10001) },
			[]field{{"/deviceIds", "got 10001"}}},
		{"duplicate ids point at the duplicate and name the first", localRules,
			func(r *task.Draft) { r.DeviceIDs = []string{"a", "b", "a", "c", "b"} },
			[]field{{"/deviceIds/2", "/deviceIds/0"}, {"/deviceIds/4", "/deviceIds/1"}}},
		{"local id with a space", localRules, func(r *task.Draft) { r.DeviceIDs = []string{"ok-1", "not ok"} },
			[]field{{"/deviceIds/1", `"not ok" is not a valid device id`}}},
		{"local id empty", localRules, func(r *task.Draft) { r.DeviceIDs = []string{""} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"local ids . and ..", localRules, func(r *task.Draft) { r.DeviceIDs = []string{".", "..", "...", ".a"} },
			[]field{{"/deviceIds/0", `"." is not a valid device id`}, {"/deviceIds/1", `".." is not a valid device id`}}},
		{"AWS ids . and .. (refused by the pattern first)", awsRules, func(r *task.Draft) { r.DeviceIDs = []string{"."} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"local id of 129 characters", localRules, func(r *task.Draft) { r.DeviceIDs = []string{strings.Repeat("x", 129)} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"managed node id too short", awsRules, func(r *task.Draft) { r.DeviceIDs = []string{"i-0123456"} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"managed node id in upper case", awsRules, func(r *task.Draft) { r.DeviceIDs = []string{"i-0123456789ABCDEF0"} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"managed node id with a wrong prefix", awsRules, func(r *task.Draft) { r.DeviceIDs = []string{"x-0123456789abcdef0"} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"local id on AWS", awsRules, func(r *task.Draft) { r.DeviceIDs = []string{"web-1"} },
			[]field{{"/deviceIds/0", "not a valid device id"}}},
		{"empty script", localRules, func(r *task.Draft) { r.ScriptURL = "" },
			[]field{{"/scriptUrl", "required"}}},
		{"blank script", localRules, func(r *task.Draft) { r.ScriptURL = "  \t" },
			[]field{{"/scriptUrl", "required"}}},
		{"script with a control character", localRules, func(r *task.Draft) { r.ScriptURL = "hello\x1b[2K.sh" },
			[]field{{"/scriptUrl", "U+001B"}}},
		{"script with a bidi override", localRules, func(r *task.Draft) { r.ScriptURL = "evil\u202Ehs.sh" },
			[]field{{"/scriptUrl", "U+202E"}}},
		{"script with a zero-width space", awsRules, func(r *task.Draft) { r.ScriptURL = "s3://bucket/pat\u200bch.sh" },
			[]field{{"/scriptUrl", "U+200B"}}},
		{"script not UTF-8", localRules, func(r *task.Draft) { r.ScriptURL = "a\xffb.sh" },
			[]field{{"/scriptUrl", "UTF-8"}}},
		{"script refused by CheckScript", localRules, func(r *task.Draft) { r.ScriptURL = "../etc/passwd" },
			[]field{{"/scriptUrl", "scriptUrl must stay under the script root"}}},
		{"101 args", localRules, func(r *task.Draft) { r.Args = make([]string, 101) },
			[]field{{"/args", "at most 100 args, got 101"}}},
		{"arg too long", localRules, func(r *task.Draft) { r.Args = []string{"ok", strings.Repeat("a", 4097)} },
			[]field{{"/args/1", "at most 4096 bytes"}}},
		{"arg with NUL", localRules, func(r *task.Draft) { r.Args = []string{"a\x00b"} },
			[]field{{"/args/0", "NUL"}}},
		{"negative timeout", localRules, func(r *task.Draft) { r.TimeoutSeconds = new(-1) },
			[]field{{"/timeoutSeconds", "between 1 and 172800"}}},
		{"timeout over 48 h", localRules, func(r *task.Draft) { r.TimeoutSeconds = new(172801) },
			[]field{{"/timeoutSeconds", "between 1 and 172800"}}},
		{"negative delivery timeout", localRules, func(r *task.Draft) { r.DeliveryTimeoutSeconds = new(-5) },
			[]field{{"/deliveryTimeoutSeconds", "between 1 and the task's timeoutSeconds (60)"}}},
		{"delivery timeout beyond the task's timeout", awsRules, func(r *task.Draft) { r.DeliveryTimeoutSeconds = new(61) },
			[]field{{"/deliveryTimeoutSeconds", "between 1 and the task's timeoutSeconds (60)"}}},
		{"concurrency 0", localRules, func(r *task.Draft) { r.MaxConcurrency = new("0") },
			[]field{{"/maxConcurrency", "at least 1"}}},
		{"concurrency 0%", localRules, func(r *task.Draft) { r.MaxConcurrency = new("0%") },
			[]field{{"/maxConcurrency", "at least 1"}}},
		{"concurrency 101%", localRules, func(r *task.Draft) { r.MaxConcurrency = new("101%") },
			[]field{{"/maxConcurrency", "at least 1"}}},
		{"concurrency with a leading zero", localRules, func(r *task.Draft) { r.MaxConcurrency = new("05") },
			[]field{{"/maxConcurrency", "at least 1"}}},
		{"concurrency not a number", localRules, func(r *task.Draft) { r.MaxConcurrency = new("all") },
			[]field{{"/maxConcurrency", "at least 1"}}},
		{"maxErrors negative", localRules, func(r *task.Draft) { r.MaxErrors = new("-1") },
			[]field{{"/maxErrors", "a count"}}},
		{"maxErrors 101%", localRules, func(r *task.Draft) { r.MaxErrors = new("101%") },
			[]field{{"/maxErrors", "a count"}}},
		{"maxErrors a fraction", localRules, func(r *task.Draft) { r.MaxErrors = new("1.5") },
			[]field{{"/maxErrors", "a count"}}},
		{"several bad fields at once", awsRules, func(r *task.Draft) {
			r.DeviceIDs = []string{"i-0123456789abcdef0", "bad", "i-0123456789abcdef0"}
			r.ScriptURL = ""
			r.Args = []string{"\x00"}
			r.TimeoutSeconds = new(200000)
			r.MaxConcurrency = new("0")
			r.MaxErrors = new("200%")
		}, []field{
			{"/deviceIds/1", "not a valid device id"},
			{"/deviceIds/2", "duplicate of /deviceIds/0"},
			{"/scriptUrl", "required"},
			{"/args/0", "NUL"},
			{"/timeoutSeconds", "between"},
			{"/maxConcurrency", "at least 1"},
			{"/maxErrors", "a count"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest()
			if tt.rules.DeviceID == task.LocalDeviceID {
				req.DeviceIDs = []string{"web-1", "web-2"}
			}
			tt.change(&req)
			_, err := tt.rules.Validate(req)
			if !task.IsCode(err, task.CodeInvalid) {
				t.Fatalf("Validate() = %v, want an invalid error", err)
			}
			var te *task.Error
			if !errors.As(err, &te) {
				t.Fatalf("Validate() returned %T, want *task.Error", err)
			}
			if len(te.Fields) != len(tt.want) {
				t.Fatalf("got %d field errors %+v, want %d %+v", len(te.Fields), te.Fields, len(tt.want), tt.want)
			}
			for _, w := range tt.want {
				i := slices.IndexFunc(te.Fields, func(f task.FieldError) bool { return f.Pointer == w.pointer })
				if i < 0 {
					t.Errorf("no error for %s in %+v", w.pointer, te.Fields)
					continue
				}
				if !strings.Contains(te.Fields[i].Detail, w.detail) {
					t.Errorf("error for %s = %q, want it to contain %q", w.pointer, te.Fields[i].Detail, w.detail)
				}
			}
		})
	}
}

func TestValidateAcceptsTheLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		rules  task.Rules
		change func(r *task.Draft)
	}{
		{"10,000 devices", awsRules, func(r *task.Draft) { r.DeviceIDs = deviceIDs(10000) }},
		{"shortest managed node ids", awsRules, func(r *task.Draft) { r.DeviceIDs = []string{"i-01234567", "mi-89abcdef"} }},
		{"local id of 128 characters", localRules, func(r *task.Draft) { r.DeviceIDs = []string{strings.Repeat("x", 128)} }},
		{"local id with every allowed punctuation", localRules, func(r *task.Draft) { r.DeviceIDs = []string{"rack-1.node_2:a"} }},
		{"100 args of 4096 bytes", localRules, func(r *task.Draft) {
			r.Args = slices.Repeat([]string{strings.Repeat("a", 4096)}, 100)
		}},
		{"timeout of 1 s", localRules, func(r *task.Draft) { r.TimeoutSeconds, r.DeliveryTimeoutSeconds = new(1), new(1) }},
		{"timeout of 48 h", localRules, func(r *task.Draft) { r.TimeoutSeconds = new(172800) }},
		{"delivery timeout of 1 s", awsRules, func(r *task.Draft) { r.DeliveryTimeoutSeconds = new(1) }},
		{"delivery timeout equal to the task's", awsRules, func(r *task.Draft) { r.DeliveryTimeoutSeconds = new(*r.TimeoutSeconds) }},
		{"concurrency 1", localRules, func(r *task.Draft) { r.MaxConcurrency = new("1") }},
		{"concurrency 1%", localRules, func(r *task.Draft) { r.MaxConcurrency = new("1%") }},
		{"concurrency 100%", localRules, func(r *task.Draft) { r.MaxConcurrency = new("100%") }},
		{"maxErrors 0%", localRules, func(r *task.Draft) { r.MaxErrors = new("0%") }},
		{"maxErrors 100%", localRules, func(r *task.Draft) { r.MaxErrors = new("100%") }},
		{"maxErrors 25", localRules, func(r *task.Draft) { r.MaxErrors = new("25") }},
		{"no CheckScript", task.Rules{DeviceID: task.LocalDeviceID}, func(r *task.Draft) { r.ScriptURL = "../anything" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest()
			if tt.rules.DeviceID == task.LocalDeviceID {
				req.DeviceIDs = []string{"web-1"}
			}
			tt.change(&req)
			if _, err := tt.rules.Validate(req); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateFillsInDefaults(t *testing.T) {
	t.Parallel()
	req, err := localRules.Validate(task.Draft{DeviceIDs: []string{"web-1"}, ScriptURL: "hello.sh"})
	if err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if req.TimeoutSeconds != 3600 {
		t.Errorf("TimeoutSeconds = %d, want 3600", req.TimeoutSeconds)
	}
	if req.DeliveryTimeoutSeconds != 600 {
		t.Errorf("DeliveryTimeoutSeconds = %d, want 600", req.DeliveryTimeoutSeconds)
	}
	if req.MaxConcurrency != "50" {
		t.Errorf("MaxConcurrency = %q, want 50", req.MaxConcurrency)
	}
	if req.MaxErrors != "100%" {
		t.Errorf("MaxErrors = %q, want 100%%", req.MaxErrors)
	}
	if req.Args == nil || len(req.Args) != 0 {
		t.Errorf("Args = %#v, want an empty non-nil slice", req.Args)
	}

	// A task shorter than the default delivery timeout gets its own timeout as the default.
	short, err := localRules.Validate(task.Draft{DeviceIDs: []string{"web-1"}, ScriptURL: "hello.sh", TimeoutSeconds: new(120)})
	if err != nil || short.DeliveryTimeoutSeconds != 120 {
		t.Errorf("a 120 s task: DeliveryTimeoutSeconds = %d, %v; want 120", short.DeliveryTimeoutSeconds, err)
	}

	// Values that were given are kept.
	given := validRequest()
	given.DeviceIDs = []string{"web-1"}
	got, err := localRules.Validate(given)
	if err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	want := task.Request{DeviceIDs: []string{"web-1"}, ScriptURL: given.ScriptURL, Args: given.Args,
		TimeoutSeconds: *given.TimeoutSeconds, DeliveryTimeoutSeconds: *given.DeliveryTimeoutSeconds,
		MaxConcurrency: *given.MaxConcurrency, MaxErrors: *given.MaxErrors}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Validate changed given values: got %+v, want %+v", got, want)
	}
}

// TestValidateRefusesExplicitZeros checks that a setting the caller sent as 0 or "" is refused
// with a hint to leave it out, where the same setting left out gets its default.
func TestValidateRefusesExplicitZeros(t *testing.T) {
	t.Parallel()
	draft := task.Draft{DeviceIDs: []string{"web-1"}, ScriptURL: "hello.sh",
		TimeoutSeconds: new(0), DeliveryTimeoutSeconds: new(0), MaxConcurrency: new(""), MaxErrors: new("")}
	_, err := localRules.Validate(draft)
	var te *task.Error
	if !errors.As(err, &te) || te.Code != task.CodeInvalid {
		t.Fatalf("Validate() = %v, want an invalid error", err)
	}
	var pointers []string
	for _, f := range te.Fields {
		pointers = append(pointers, f.Pointer)
		if !strings.Contains(f.Detail, "leave it out for the default") {
			t.Errorf("%s: detail %q does not say to leave it out", f.Pointer, f.Detail)
		}
	}
	if want := []string{"/timeoutSeconds", "/deliveryTimeoutSeconds", "/maxConcurrency", "/maxErrors"}; !slices.Equal(pointers, want) {
		t.Errorf("pointers %q, want %q", pointers, want)
	}
}

func TestConcurrencyAndErrorBudget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		devices         int
		concurrency     string
		wantConcurrency int
		maxErrors       string
		wantBudget      int
	}{
		// Counts are taken as they are.
		{devices: 20, concurrency: "5", wantConcurrency: 5, maxErrors: "3", wantBudget: 3},
		{devices: 20, concurrency: "1", wantConcurrency: 1, maxErrors: "0", wantBudget: 0},
		// A share of the concurrency rounds up, so that 1% of a small fleet still runs a device.
		{devices: 25, concurrency: "10%", wantConcurrency: 3, maxErrors: "10%", wantBudget: 2},
		{devices: 10, concurrency: "1%", wantConcurrency: 1, maxErrors: "1%", wantBudget: 0},
		{devices: 3, concurrency: "50%", wantConcurrency: 2, maxErrors: "50%", wantBudget: 1},
		{devices: 200, concurrency: "10%", wantConcurrency: 20, maxErrors: "10%", wantBudget: 20},
		{devices: 7, concurrency: "100%", wantConcurrency: 7, maxErrors: "100%", wantBudget: 7},
		{devices: 99, concurrency: "99%", wantConcurrency: 99, maxErrors: "99%", wantBudget: 98},
		// A share of the error budget rounds down, so that a budget never tolerates more than asked.
		{devices: 9, concurrency: "10%", wantConcurrency: 1, maxErrors: "10%", wantBudget: 0},
		{devices: 5, concurrency: "2", wantConcurrency: 2, maxErrors: "0%", wantBudget: 0},
		// No maxErrors at all tolerates every device (a request that skipped validation).
		{devices: 4, concurrency: "2", wantConcurrency: 2, maxErrors: "", wantBudget: 4},
		// Concurrency is at least one even when the share of an empty fleet is zero.
		{devices: 0, concurrency: "10%", wantConcurrency: 1, maxErrors: "10%", wantBudget: 0},
	}
	for _, tt := range tests {
		req := task.Request{DeviceIDs: make([]string, tt.devices), MaxConcurrency: tt.concurrency, MaxErrors: tt.maxErrors}
		if got := req.Concurrency(); got != tt.wantConcurrency {
			t.Errorf("%d devices, maxConcurrency %q: Concurrency() = %d, want %d", tt.devices, tt.concurrency, got, tt.wantConcurrency)
		}
		if got := req.ErrorBudget(); got != tt.wantBudget {
			t.Errorf("%d devices, maxErrors %q: ErrorBudget() = %d, want %d", tt.devices, tt.maxErrors, got, tt.wantBudget)
		}
	}
}

func TestValidateListsAtMostAHundredBadDeviceIDs(t *testing.T) {
	t.Parallel()
	req := validRequest()
	req.DeviceIDs = make([]string, 10000)
	for i := range req.DeviceIDs {
		req.DeviceIDs[i] = fmt.Sprintf("bad id %d", i)
	}
	req.DeviceIDs[0] = "web-1"
	req.DeviceIDs[1] = "web-1" // a duplicate counts too
	_, err := localRules.Validate(req)
	var te *task.Error
	if !errors.As(err, &te) {
		t.Fatalf("Validate() = %v", err)
	}
	if len(te.Fields) != task.MaxDeviceIDErrors+1 {
		t.Fatalf("%d field errors, want %d and a count", len(te.Fields), task.MaxDeviceIDErrors+1)
	}
	if te.Fields[0].Pointer != "/deviceIds/1" || !strings.Contains(te.Fields[0].Detail, "duplicate") {
		t.Errorf("first error %+v, want the duplicate at /deviceIds/1", te.Fields[0])
	}
	last := te.Fields[task.MaxDeviceIDErrors]
	if last.Pointer != "/deviceIds" || !strings.Contains(last.Detail, "9899 more device ids") {
		t.Errorf("last error %+v, want a count of the 9899 not listed", last)
	}
}

func TestValidLocalIDIsTheRunnersDirectoryRule(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{"web-1": true, "...": true, ".hidden": true, "a:b.c_d": true,
		".": false, "..": false, "": false, "a/b": false, strings.Repeat("x", 129): false} {
		if got := task.ValidLocalID(id); got != want {
			t.Errorf("ValidLocalID(%q) = %v, want %v", id, got, want)
		}
	}
}
