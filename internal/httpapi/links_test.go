package httpapi

import (
	"net/http"
	"testing"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestActionLinksFollowWhatIsAllowed holds the links a client (the dashboard) takes its
// buttons from to what the API accepts: a device's cancel link while a cancel would move it,
// and a task's relaunch link once it has finished.
func TestActionLinksFollowWhatIsAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := b.submit("web-1", "web-2", "web-3")
	if tk.Links.Relaunch != "" {
		t.Errorf("a pending task has a relaunch link %q", tk.Links.Relaunch)
	}
	b.deliver()
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceRunning},
		task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceFailed, ExitCode: new(1)})
	device := func(id string) api.Device {
		t.Helper()
		return decode[api.Device](t, b.do(req{method: "GET", path: tk.Links.Devices + "/" + id, token: aliceToken}))
	}
	running, ended, pending := device("web-1"), device("web-2"), device("web-3")
	if running.Links.Cancel != running.Links.Self || pending.Links.Cancel != pending.Links.Self {
		t.Errorf("cancel links of a running and a pending device: %q, %q; want their own URLs", running.Links.Cancel, pending.Links.Cancel)
	}
	if ended.Links.Cancel != "" {
		t.Errorf("a failed device has a cancel link %q", ended.Links.Cancel)
	}
	// Following the link stops the running device; while it is being stopped the link is gone.
	if r := b.do(req{method: "DELETE", path: running.Links.Cancel, token: aliceToken}); r.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE the cancel link: %d %s", r.StatusCode, r.body)
	}
	if d := device("web-1"); d.Links.Cancel != "" || d.CancelRequestedAt == nil {
		t.Errorf("a device being stopped: cancel link %q, cancelRequestedAt %v", d.Links.Cancel, d.CancelRequestedAt)
	}
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceCancelled},
		task.DeviceUpdate{DeviceID: "web-3", Status: task.DeviceSucceeded, ExitCode: new(0)})
	if d := device("web-1"); d.Status != api.DeviceCancelled || d.Links.Cancel != "" {
		t.Errorf("a cancelled device: %s, cancel link %q", d.Status, d.Links.Cancel)
	}
	done := decode[api.Task](t, b.do(req{method: "GET", path: tk.Links.Self, token: aliceToken}))
	if !api.Terminal(done.Status) || done.Links.Relaunch != done.Links.Self+"/relaunch" {
		t.Fatalf("finished task %s: relaunch link %q", done.Status, done.Links.Relaunch)
	}
	r := b.do(req{method: "POST", path: done.Links.Relaunch, token: aliceToken, body: `{"devices":"failed"}`})
	if r.StatusCode != http.StatusAccepted || decode[api.Task](t, r).RelaunchOf.ID != tk.ID {
		t.Errorf("POST the relaunch link: %d %s", r.StatusCode, r.body)
	}
}
