package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// TestE2EFleetOperations drives the fleet commands against a real server: inventory and
// submit --target, cancel --device, output -f, and relaunch --failed --wait, each with --json
// where it prints.
func TestE2EFleetOperations(t *testing.T) {
	t.Parallel()
	inventory := filepath.Join(t.TempDir(), "devices.yaml")
	if err := os.WriteFile(inventory, []byte(`devices:
  - {id: d1, tags: {Env: prod, Role: web}}
  - {id: d2, tags: {Env: prod, Role: db}}
  - {id: d3, tags: {Env: staging, Role: web}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startServe(t, "--inventory", inventory)
	ctx := t.Context()

	r := run(ctx, f.url, "inventory", "--tag", "Env=prod", "--json")
	var inv api.InventoryList
	if err := json.Unmarshal([]byte(r.stdout), &inv); r.code != ExitOK || err != nil || len(inv.Items) != 2 {
		t.Fatalf("inventory --tag Env=prod --json = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r = run(ctx, f.url, "inventory", "--tag", "Role=web|db"); r.code != ExitOK || strings.Count(r.stdout, "\n") != 4 ||
		!strings.Contains(r.stdout, "Env=staging Role=web") {
		t.Errorf("inventory table = %d %q %q", r.code, r.stdout, r.stderr)
	}

	// submit --target resolves the tags; relaunch --failed --wait runs the failed one again.
	r = run(ctx, f.url, "submit", "--target", "tag:Env=prod", "--target", "tag:Role=web,db", "--script", "fail-d2.sh", "--wait")
	if r.code != ExitTaskFailed || !strings.Contains(r.stdout, "d2") {
		t.Fatalf("submit --target --wait = %d %q %q", r.code, r.stdout, r.stderr)
	}
	var first api.Task
	for tk, err := range f.client.List(ctx, client.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		first = tk
		break
	}
	if first.Request.DeviceCount != 2 || len(first.Request.Targets) != 2 {
		t.Fatalf("the targeted task: %+v", first.Request)
	}
	r = run(ctx, f.url, "relaunch", first.ID, "--failed", "--wait", "--timeout", "2m", "--delivery-timeout", "90")
	if r.code != ExitTaskFailed || !strings.Contains(r.stdout, "relaunched task "+first.ID) || !strings.Contains(r.stdout, "1 device") {
		t.Fatalf("relaunch --failed --wait = %d %q %q", r.code, r.stdout, r.stderr)
	}
	var relaunches []string
	for tk, err := range f.client.List(ctx, client.ListOptions{RelaunchOf: first.ID}) {
		if err != nil {
			t.Fatal(err)
		}
		relaunches = append(relaunches, tk.ID)
		if tk.Request.TimeoutSeconds != 120 || tk.Request.DeliveryTimeoutSeconds != 90 {
			t.Errorf("the relaunch's overrides: timeout %d, delivery timeout %d; want 120 and 90",
				tk.Request.TimeoutSeconds, tk.Request.DeliveryTimeoutSeconds)
		}
	}
	if len(relaunches) != 1 {
		t.Errorf("the original lists relaunches %v, want one", relaunches)
	}
	if r = run(ctx, f.url, "relaunch", first.ID); r.code != ExitUsage || !strings.Contains(r.stderr, "--failed") {
		t.Errorf("relaunch without a selection = %d %q", r.code, r.stderr)
	}

	// cancel --device stops one device of a running task; output -f follows another.
	gate := filepath.Join(t.TempDir(), "open")
	id := f.submit(t, "--devices", "d1,d2", "--script", "gate.sh", "--arg", gate)
	f.waitFor(t, id, "both devices running", func(tk *api.Task) bool { return tk.Progress.Devices.Running == 2 })
	followed := async(ctx, f.url, "output", id, "d2", "-f")
	r = run(ctx, f.url, "cancel", id, "--device", "d1", "--wait", "--json")
	var stopped api.DeviceList
	if err := json.Unmarshal([]byte(r.stdout), &stopped); r.code != ExitOK || err != nil || len(stopped.Items) != 1 ||
		stopped.Items[0].Status != api.DeviceCancelled {
		t.Fatalf("cancel --device d1 --wait --json = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if tk, _ := f.client.Get(ctx, id); tk.Status != api.StatusRunning || tk.Progress.Devices.Running != 1 {
		t.Fatalf("after one device was cancelled the task is %s with %+v", tk.Status, tk.Progress.Devices)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := await(t, followed); r.code != ExitOK || r.stdout != "released\n" {
		t.Errorf("output -f = %d %q %q", r.code, r.stdout, r.stderr)
	}
	done := f.waitFor(t, id, "the end", func(tk *api.Task) bool { return api.Terminal(tk.Status) })
	if done.Status != api.StatusCompleted || !slices.Equal(done.Result.CancelledDevices, []string{"d1"}) {
		t.Errorf("the task ended %s with %+v", done.Status, done.Result)
	}
	if r = run(ctx, f.url, "cancel", id, "--device", "d2"); r.code != ExitUsage || !strings.Contains(r.stderr, "succeeded") {
		t.Errorf("cancel of a finished device = %d %q", r.code, r.stderr)
	}
}
