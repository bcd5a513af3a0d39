package task_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestCheckRelaunch(t *testing.T) {
	t.Parallel()
	done := &task.Task{ID: "T1", Status: task.StatusCompleted, Request: task.Request{DeviceIDs: []string{"a", "b", "c"}}}
	cases := []struct {
		name     string
		draft    task.RelaunchDraft
		pointers []string // nil: accepted
	}{
		{"failed", task.RelaunchDraft{Which: task.RelaunchFailed}, nil},
		{"all", task.RelaunchDraft{Which: task.RelaunchAll}, nil},
		{"a list", task.RelaunchDraft{DeviceIDs: []string{"c", "a"}}, nil},
		{"nothing", task.RelaunchDraft{}, []string{"/devices"}},
		{"another word", task.RelaunchDraft{Which: "broken"}, []string{"/devices"}},
		{"strangers and repeats", task.RelaunchDraft{DeviceIDs: []string{"a", "z", "a"}}, []string{"/devices/1", "/devices/2"}},
	}
	for _, c := range cases {
		err := task.CheckRelaunch(done, c.draft)
		if c.pointers == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var te *task.Error
		if !errors.As(err, &te) || te.Code != task.CodeInvalid {
			t.Errorf("%s: %v, want invalid", c.name, err)
			continue
		}
		var got []string
		for _, f := range te.Fields {
			got = append(got, f.Pointer)
		}
		if !slices.Equal(got, c.pointers) {
			t.Errorf("%s: fields %v, want %v", c.name, got, c.pointers)
		}
	}
	for _, s := range task.Statuses() {
		if s.Terminal() {
			continue
		}
		running := &task.Task{ID: "T2", Status: s}
		var te *task.Error
		if err := task.CheckRelaunch(running, task.RelaunchDraft{Which: task.RelaunchAll}); !errors.As(err, &te) ||
			te.Code != task.CodeConflict || te.Status != s {
			t.Errorf("relaunch of a %s task: %v; want a conflict carrying %s", s, err, s)
		}
	}
	if err := task.NothingToRelaunch(done); !task.IsCode(err, task.CodeInvalid) {
		t.Errorf("NothingToRelaunch = %v", err)
	}
}

func TestRelaunchDraftKeepsWhatIsNotOverridden(t *testing.T) {
	t.Parallel()
	orig := &task.Task{ID: "T1", Status: task.StatusFailed, Request: task.Request{DeviceIDs: []string{"a", "b"},
		ScriptURL: "patch.sh", Args: []string{"--x"}, TimeoutSeconds: 60, MaxConcurrency: "5", MaxErrors: "0"}}
	rules := task.Rules{DeviceID: task.LocalDeviceID}
	req, err := rules.Validate(task.RelaunchDraft{}.Draft(orig, []string{"b"}))
	if err != nil {
		t.Fatal(err)
	}
	want := task.Request{DeviceIDs: []string{"b"}, ScriptURL: "patch.sh", Args: []string{"--x"}, TimeoutSeconds: 60,
		MaxConcurrency: "5", MaxErrors: "0"}
	if !slices.Equal(req.DeviceIDs, want.DeviceIDs) || !slices.Equal(req.Args, want.Args) || req.ScriptURL != want.ScriptURL ||
		req.TimeoutSeconds != 60 || req.MaxConcurrency != "5" || req.MaxErrors != "0" {
		t.Errorf("relaunch request = %+v, want %+v", req, want)
	}
	args, timeout, conc, errs := []string{}, 120, "1", "100%"
	req, err = rules.Validate(task.RelaunchDraft{Args: &args, TimeoutSeconds: &timeout, MaxConcurrency: &conc, MaxErrors: &errs}.Draft(orig, []string{"a"}))
	if err != nil || len(req.Args) != 0 || req.TimeoutSeconds != 120 || req.MaxConcurrency != "1" || req.MaxErrors != "100%" {
		t.Errorf("overridden request = %+v, %v", req, err)
	}
	zero := 0
	if _, err := rules.Validate(task.RelaunchDraft{TimeoutSeconds: &zero}.Draft(orig, []string{"a"})); !task.IsCode(err, task.CodeInvalid) {
		t.Errorf("an explicit zero timeout was accepted: %v", err)
	}
}

func TestRelaunchDraftDeliveryTimeout(t *testing.T) {
	t.Parallel()
	orig := &task.Task{ID: "T1", Status: task.StatusFailed, Request: task.Request{DeviceIDs: []string{"a"},
		ScriptURL: "patch.sh", TimeoutSeconds: 300, DeliveryTimeoutSeconds: 45, MaxConcurrency: "5", MaxErrors: "0"}}
	rules := task.Rules{DeviceID: task.LocalDeviceID}
	n := func(v int) *int { return &v }
	for _, tc := range []struct {
		name  string
		draft task.RelaunchDraft
		want  int
	}{
		{"kept", task.RelaunchDraft{}, 45},
		{"overridden", task.RelaunchDraft{DeliveryTimeoutSeconds: n(30)}, 30},
		{"defaulted with a new timeout", task.RelaunchDraft{TimeoutSeconds: n(20)}, 20},
		{"both overridden", task.RelaunchDraft{TimeoutSeconds: n(900), DeliveryTimeoutSeconds: n(120)}, 120},
	} {
		req, err := rules.Validate(tc.draft.Draft(orig, []string{"a"}))
		if err != nil || req.DeliveryTimeoutSeconds != tc.want {
			t.Errorf("%s: deliveryTimeoutSeconds = %d, %v; want %d", tc.name, req.DeliveryTimeoutSeconds, err, tc.want)
		}
	}
	if _, err := rules.Validate(task.RelaunchDraft{DeliveryTimeoutSeconds: n(400)}.Draft(orig, []string{"a"})); !task.IsCode(err, task.CodeInvalid) {
		t.Errorf("a delivery timeout above the timeout was accepted: %v", err)
	}
}

func TestRelaunchDraftKeepsTheWebhookSubscription(t *testing.T) {
	t.Parallel()
	orig := &task.Task{ID: "T1", Status: task.StatusFailed, Request: task.Request{DeviceIDs: []string{"a"},
		ScriptURL: "patch.sh", TimeoutSeconds: 60, MaxConcurrency: "5", MaxErrors: "0",
		Notify: &task.Notify{URL: "https://hooks.example.com/x", Events: []task.WebhookType{task.WebhookDeviceFinished}, Links: "https://old.example.com"}}}
	rules := task.Rules{DeviceID: task.LocalDeviceID, CheckWebhookURL: func(string) error { return nil }}
	req, err := rules.Validate(task.RelaunchDraft{}.Draft(orig, []string{"a"}))
	if err != nil {
		t.Fatal(err)
	}
	if n := req.Notify; n == nil || n.URL != "https://hooks.example.com/x" || !slices.Equal(n.Events, []task.WebhookType{task.WebhookDeviceFinished}) {
		t.Errorf("the relaunch's notify = %+v, want the original's URL and events", n)
	}
}
