package dashboard_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// deviceStatuses reads each device's status from the API.
func deviceStatuses(t *testing.T, srv *server, id string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for d, err := range srv.api.Devices(t.Context(), id, client.DeviceOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out[d.ID] = d.Status
	}
	return out
}

func TestDeviceCancelAndFollowedOutput(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	task := srv.submit(t, api.SubmitRequest{DeviceIDs: []string{"edge-1", "edge-2", "edge-3"}, ScriptURL: "slow.sh", Args: []string{"60"}})
	tb.run("open the task", chromedp.Navigate(srv.base+"/ui/#/tasks/"+task.ID))
	tb.waitJS("every device running, each with its cancel button",
		`document.querySelectorAll('.device-table button[aria-label^="Cancel device"]').length === 3 && `+
			`[...document.querySelectorAll(".device-table tbody .badge")].every(b => b.textContent === "running")`)

	// edge-1's output is followed: its lines arrive while it runs, on one followed request.
	tb.run("open edge-1", chromedp.Click(chromedp.CSS(`tr[data-device="edge-1"] button.link`)))
	tb.waitJS("edge-1's first line", `document.getElementById("stdout").textContent.includes("edge-1: step 1/60")`)
	tb.waitJS("edge-1's next line, without asking", `document.getElementById("stdout").textContent.includes("edge-1: step 2/60")`)
	if !tb.requested("/devices/edge-1/output?stream=stdout&follow=true") {
		t.Error("the page did not follow edge-1's output")
	}

	// Cancelling edge-2 stops it alone.
	tb.run("cancel edge-2", chromedp.Click(chromedp.CSS(`button[aria-label="Cancel device edge-2"]`)))
	tb.waitJS("edge-2 cancelled on the page", `document.querySelector('tr[data-device="edge-2"] .badge').textContent === "cancelled"`)
	if got := deviceStatuses(t, srv, task.ID); got["edge-2"] != api.DeviceCancelled || got["edge-1"] != api.DeviceRunning || got["edge-3"] != api.DeviceRunning {
		t.Errorf("after cancelling edge-2 the devices are %v", got)
	}
	if n := eval[int](tb, "count the cancel buttons", `document.querySelectorAll('.device-table button[aria-label^="Cancel device"]').length`); n != 2 {
		t.Errorf("%d devices offer a cancel, want the 2 still running", n)
	}
	tb.run("cancel the task", chromedp.Click(chromedp.ID("cancel-task")))
	tb.waitJS("the task cancelled", heading+` === "cancelled"`)
}

func TestRelaunchTheFailedDevices(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	// flaky.sh fails on a-2 and b-2.
	first := srv.submit(t, api.SubmitRequest{DeviceIDs: []string{"a-1", "a-2", "b-2", "c-3"}, ScriptURL: "flaky.sh"})
	tb.run("open the task", chromedp.Navigate(srv.base+"/ui/#/tasks/"+first.ID))
	tb.waitJS("the finished task's relaunch button", heading+` === "completed" && document.getElementById("relaunch")`)
	tb.run("relaunch the failed devices", chromedp.Click(chromedp.ID("relaunch")))
	tb.waitJS("the relaunch's page", `location.hash !== "#/tasks/`+first.ID+`" && `+heading+` === "completed"`)
	if got := eval[string](tb, "read the page", `document.querySelector(".summary").textContent`); !strings.Contains(got, "relaunch of "+first.ID) {
		t.Errorf("the relaunch's page says %q, want it to name the original", got)
	}
	id := strings.TrimPrefix(eval[string](tb, "read the hash", `location.hash`), "#/tasks/")
	again, err := srv.api.Get(t.Context(), id)
	if err != nil || again.RelaunchOf == nil || again.RelaunchOf.ID != first.ID {
		t.Fatalf("the relaunch is %+v (%v)", again, err)
	}
	got := deviceStatuses(t, srv, id)
	ids := make([]string, 0, len(got))
	for d := range got {
		ids = append(ids, d)
	}
	slices.Sort(ids)
	if fmt.Sprint(ids) != "[a-2 b-2]" {
		t.Errorf("the relaunch ran on %v, want the failed a-2 and b-2", ids)
	}
}

func TestSubmitByTargets(t *testing.T) {
	inventory := filepath.Join(t.TempDir(), "devices.yaml")
	if err := os.WriteFile(inventory, []byte(`devices:
  - {id: web-1, tags: {Env: prod, Role: web}}
  - {id: web-2, tags: {Env: prod, Role: web}}
  - {id: web-3, tags: {Env: staging, Role: web}}
  - {id: db-1, tags: {Env: prod, Role: db}}
  - {id: db-2, tags: {Env: staging, Role: db}}
  - {id: db-3, tags: {Env: staging, Role: db}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "", "--inventory", inventory)
	tb := newTab(t, srv.base)
	tb.run("open the form", chromedp.Navigate(srv.base+"/ui/#/submit"), chromedp.WaitVisible(chromedp.ID("f-targets")))
	tb.run("submit by tags",
		chromedp.SendKeys(chromedp.ID("f-targets"), "tag:Role=web,db\ntag:Env=prod"),
		chromedp.SendKeys(chromedp.ID("f-scriptUrl"), "hello.sh"),
		chromedp.Click(chromedp.CSS(`form.submit button[type=submit]`)))
	tb.waitJS("the new task, finished", `location.hash.startsWith("#/tasks/") && `+heading+` === "completed"`)
	id := strings.TrimPrefix(eval[string](tb, "read the hash", `location.hash`), "#/tasks/")
	got := deviceStatuses(t, srv, id)
	if len(got) != 3 || got["web-1"] == "" || got["web-2"] == "" || got["db-1"] == "" {
		t.Errorf("the targets selected %v, want web-1, web-2 and db-1", got)
	}
}
