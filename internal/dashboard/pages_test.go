package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
	"github.com/fleetrun/fleetrun/internal/serve"
)

// server is a real `fleetrun serve` for one test, on a free loopback port, with the example
// scripts.
type server struct {
	base string
	api  *client.Client
}

func startServer(t *testing.T, token string, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args = append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--script-root", "../../examples/scripts",
		"--grace", "1s", "--log-level", "warn"}, args...)
	base, done, err := serve.Start(ctx, args, io.Discard)
	if err != nil {
		cancel()
		t.Fatalf("start fleetrun serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	opts := []client.Option{client.WithRetry(client.NoRetry)}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	c, err := client.New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &server{base: base, api: c}
}

func (s *server) submit(t *testing.T, req api.SubmitRequest) *api.Task {
	t.Helper()
	task, err := s.api.Submit(t.Context(), req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return task
}

// deviceIDs returns n device ids made by format from 0, 1, …
func deviceIDs(format string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf(format, i)
	}
	return ids
}

// heading is the expression of the task page's status, once it shows the task.
const heading = `document.querySelector(".heading[data-status]")?.dataset.status`

func TestTaskListShowsANewTaskAndItsCompletionLive(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	tb.run("open the server's root", chromedp.Navigate(srv.base+"/"))
	tb.waitJS("the redirect to the dashboard's live task list",
		`location.pathname === "/ui/" && document.querySelector("table.tasks") && document.getElementById("live").dataset.state === "live"`)
	// A reload would lose this.
	eval[bool](tb, "mark the page", `window.notReloaded = true`)

	task := srv.submit(t, api.SubmitRequest{DeviceIDs: []string{"web-1", "web-2"}, ScriptURL: "slow.sh", Args: []string{"1"}})
	row := fmt.Sprintf(`document.querySelector('tr[data-task="%s"]')`, task.ID)
	tb.waitJS("the new task's row", row)
	tb.waitJS("the row to say completed", row+`.dataset.status === "completed" && `+row+`.querySelector(".badge").textContent === "completed"`)
	if got := eval[string](tb, "read the row", row+`.textContent`); !strings.Contains(got, "100%") || !strings.Contains(got, "2/2 done: 2 succeeded") {
		t.Errorf("the completed row says %q", got)
	}
	if !eval[bool](tb, "check for a reload", `window.notReloaded === true`) {
		t.Error("the page reloaded")
	}
}

func TestSubmitFormShowsFieldErrorsThenFollowsTheNewTask(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	tb.expectStatus(http.StatusUnprocessableEntity)
	tb.expectStatus(http.StatusNotFound) // the form asks whether the server has an inventory
	tb.run("open the form", chromedp.Navigate(srv.base+"/ui/#/submit"), chromedp.WaitVisible(chromedp.ID("f-scriptUrl")))

	// What the API says of the bad script is what the page must show beside the field.
	_, err := srv.api.Submit(t.Context(), api.SubmitRequest{DeviceIDs: []string{"web-1", "web-2"}, ScriptURL: "no-such.sh"})
	problem, ok := err.(*client.Error)
	if !ok || len(problem.Errors) != 1 || problem.Errors[0].Pointer != "/scriptUrl" {
		t.Fatalf("the API's answer to a bad script: %v", err)
	}
	tb.run("fill in a bad script",
		chromedp.SendKeys(chromedp.ID("f-deviceIds"), "web-1 web-2"),
		chromedp.SendKeys(chromedp.ID("f-scriptUrl"), "no-such.sh"),
		chromedp.Click(chromedp.CSS(`form.submit button[type=submit]`)))
	tb.waitJS("the script's field error", `!document.getElementById("f-scriptUrl-error").hidden`)
	if got := eval[string](tb, "read the error", `document.getElementById("f-scriptUrl-error").textContent`); got != problem.Errors[0].Detail {
		t.Errorf("the field error says %q, want the API's %q", got, problem.Errors[0].Detail)
	}
	if !eval[bool](tb, "check the field", `document.getElementById("f-scriptUrl").getAttribute("aria-invalid") === "true" && document.activeElement.id === "f-scriptUrl"`) {
		t.Error("the script field is not marked invalid and focused")
	}
	eval[bool](tb, "mark the page", `window.notReloaded = true`)

	eval[string](tb, "clear the script", `document.getElementById("f-scriptUrl").value = ""`)
	tb.run("fix the script",
		chromedp.SendKeys(chromedp.ID("f-scriptUrl"), "slow.sh"),
		chromedp.SendKeys(chromedp.ID("f-args"), "2"),
		chromedp.Click(chromedp.CSS(`form.submit button[type=submit]`)))
	tb.waitJS("the new task's page", `location.hash.startsWith("#/tasks/") && `+heading)
	// The bar is seen below 100% first, and then reaching it while the page stays.
	tb.waitJS("a running task", heading+` === "running" && document.querySelector("[role=progressbar]").getAttribute("aria-valuenow") !== "100"`)
	tb.waitJS("the bar at 100%", `document.querySelector("[role=progressbar]").getAttribute("aria-valuenow") === "100" && document.getElementById("percentage").textContent === "100%"`)
	tb.waitJS("completed", heading+` === "completed"`)
	if !eval[bool](tb, "check for a reload", `window.notReloaded === true`) {
		t.Error("the page reloaded")
	}
	id := strings.TrimPrefix(eval[string](tb, "read the hash", `location.hash`), "#/tasks/")
	if task, err := srv.api.Get(t.Context(), id); err != nil || task.Request.ScriptURL != "slow.sh" || task.Request.DeviceCount != 2 {
		t.Errorf("the task the form submitted: %+v, %v", task, err)
	}
}

func TestDeviceGridDrawsEveryDeviceAndOpensAFailedOne(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	ids := deviceIDs("d-%04d", 2000)
	// flaky.sh fails on the devices whose id ends in 2.
	task := srv.submit(t, api.SubmitRequest{DeviceIDs: ids, ScriptURL: "flaky.sh", MaxConcurrency: "200"})
	tb.run("open the task", chromedp.Navigate(srv.base+"/ui/#/tasks/"+task.ID))
	tb.waitJS("the task to complete on the page", heading+` === "completed"`)
	tb.waitJS("the grid to draw every device as it ended", `document.getElementById("grid").getAttribute("aria-label") === "2000 devices: 1800 succeeded, 200 failed"`)

	// Every cell has its device's colour, as the API tells each device's status.
	var want []string
	for d, err := range srv.api.Devices(t.Context(), task.ID, client.DeviceOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, d.Status)
	}
	if len(want) != 2000 || want[2] != api.DeviceFailed || want[0] != api.DeviceSucceeded {
		t.Fatalf("the API lists %d devices, d-0000 %s, d-0002 %s", len(want), want[0], want[2])
	}
	wantJSON, _ := json.Marshal(want)
	// Each cell is sampled near its top left corner, where no mark is drawn, against the
	// colour of the status's swatch in the counts above the grid.
	wrong := eval[[]int](tb, "compare every cell", `(() => {
		const want = `+string(wantJSON)+`;
		const c = document.getElementById("grid"), g = c.getContext("2d");
		const size = +c.dataset.cell, cols = +c.dataset.cols, dpr = c.width / parseFloat(c.style.width);
		const px = g.getImageData(0, 0, c.width, c.height).data;
		const colour = {};
		const wrong = [];
		want.forEach((s, i) => {
			colour[s] ??= getComputedStyle(document.querySelector('.counts [data-status="' + s + '"] .swatch')).backgroundColor;
			const x = Math.floor(((i % cols) * size + 1) * dpr), y = Math.floor((Math.floor(i / cols) * size + 1) * dpr);
			const o = (y * c.width + x) * 4;
			if ("rgb(" + px[o] + ", " + px[o + 1] + ", " + px[o + 2] + ")" !== colour[s]) wrong.push(i);
		});
		return wrong;
	})()`)
	if len(wrong) > 0 {
		t.Errorf("%d cells do not have their device's colour, the first at %v", len(wrong), wrong[:min(5, len(wrong))])
	}

	// The device table pages through them, and filters by status.
	first := `document.querySelector(".device-table tbody tr")?.dataset.device`
	tb.waitJS("the table's first page", first+` === "d-0000"`)
	tb.run("the next page", chromedp.Click(chromedp.CSS(".pager button:last-child")))
	tb.waitJS("the table's second page", first+` === "d-0050" && document.querySelector(".pager span").textContent === "Page 2"`)
	tb.run("filter the failed", chromedp.SetValue(chromedp.ID("device-filter"), "failed"))
	eval[bool](tb, "apply the filter", `document.getElementById("device-filter").dispatchEvent(new Event("change")), true`)
	tb.waitJS("the failed devices from the start", first+` === "d-0002" && [...document.querySelectorAll(".device-table tbody .badge")].every(b => b.textContent === "failed")`)

	// Pointing at d-0002 names it; clicking it opens its output.
	x, y := cellCentre(tb, 2)
	tb.run("point at d-0002", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y, chromedp.ButtonNone))
	tb.waitJS("the tooltip", `document.querySelector(".grid .tip:not([hidden])")?.textContent === "d-0002 · failed"`)
	tb.run("click d-0002", chromedp.MouseClickXY(x, y))
	tb.waitJS("d-0002's output", `!document.getElementById("output").hidden && document.getElementById("stderr").textContent.includes("disk check failed on d-0002")`)
	if got := eval[string](tb, "read the output", `document.getElementById("output").textContent`); !strings.Contains(got, "exit 3") || !strings.Contains(got, "checking d-0002") {
		t.Errorf("the output panel says %q", got)
	}
	// The keyboard reaches the same: focus the grid, go to its first cell, move right twice,
	// press Enter.
	eval[bool](tb, "close the output", `document.querySelector("#output button").click(), true`)
	tb.run("open d-0002 from the keyboard", chromedp.Focus(chromedp.ID("grid")),
		chromedp.KeyEvent(kb.Home), chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight))
	tb.waitJS("the grid to name d-0002", `document.getElementById("grid-said").textContent.startsWith("d-0002: failed")`)
	tb.run("press Enter", chromedp.KeyEvent(kb.Enter))
	tb.waitJS("d-0002's output again", `!document.getElementById("output").hidden && document.getElementById("stderr").textContent.includes("d-0002")`)
}

// cellCentre scrolls the grid into view and returns where it draws device i, in the
// viewport's coordinates.
func cellCentre(tb *tab, i int) (x, y float64) {
	tb.t.Helper()
	xy := eval[[]float64](tb, "find a cell", fmt.Sprintf(`(() => {
		const c = document.getElementById("grid");
		c.scrollIntoView({block: "center"});
		const r = c.getBoundingClientRect();
		const size = +c.dataset.cell, cols = +c.dataset.cols, i = %d;
		return [r.left + (i %% cols) * size + size / 2, r.top + Math.floor(i / cols) * size + size / 2];
	})()`, i))
	return xy[0], xy[1]
}

func TestCancelOnASlowTaskEndsItCancelled(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	task := srv.submit(t, api.SubmitRequest{DeviceIDs: []string{"edge-1", "edge-2", "edge-3"}, ScriptURL: "slow.sh", Args: []string{"60"}})
	// On a phone-width screen, and from the keyboard alone.
	tb.run("open the task on a phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(srv.base+"/ui/#/tasks/"+task.ID))
	tb.waitJS("the task to run", heading+` === "running" && document.getElementById("cancel-task")`)
	if wide := eval[bool](tb, "measure the page", `document.documentElement.scrollWidth > window.innerWidth`); wide {
		t.Error("the task page is wider than a phone's screen")
	}
	for i := 0; eval[string](tb, "see what has focus", `document.activeElement.id`) != "cancel-task"; i++ {
		if i == 20 {
			t.Fatal("Tab never reaches the cancel button")
		}
		tb.run("press Tab", chromedp.KeyEvent(kb.Tab))
	}
	tb.run("cancel it with Enter", chromedp.KeyEvent(kb.Enter))
	tb.waitJS("the page to say cancelled", heading+` === "cancelled" && document.querySelector(".heading .badge").textContent === "cancelled" && !document.getElementById("cancel-task")`)
	got, err := srv.api.Get(t.Context(), task.ID)
	if err != nil || got.Status != api.StatusCancelled || got.Progress.Devices.Cancelled != 3 {
		t.Fatalf("the API says the task is %+v (%v), want cancelled with 3 cancelled devices", got, err)
	}
	tb.waitJS("the device table to say so", `[...document.querySelectorAll(".device-table tbody .badge")].filter(b => b.textContent === "cancelled").length === 3`)
}

func TestTokenIsAskedForOnceAndOtherOwnersTasksNeverShow(t *testing.T) {
	const alice, bob = "alice-secret-1", "bob-secret-12"
	srv := startServer(t, alice, "--token", "alice="+alice, "--token", "bob="+bob)
	bobs, err := client.New(srv.base, client.WithToken(bob))
	if err != nil {
		t.Fatal(err)
	}
	bobTask, err := bobs.Submit(t.Context(), api.SubmitRequest{DeviceIDs: []string{"db-1"}, ScriptURL: "hello.sh"})
	if err != nil {
		t.Fatal(err)
	}
	aliceTask := srv.submit(t, api.SubmitRequest{DeviceIDs: []string{"web-1"}, ScriptURL: "hello.sh"})

	tb := newTab(t, srv.base)
	tb.expectStatus(http.StatusUnauthorized)
	tb.run("open the dashboard", chromedp.Navigate(srv.base+"/ui/"))
	tb.waitJS("the token form", `document.getElementById("token")`)
	if got := eval[string](tb, "read the problem", `document.querySelector(".signin .problem").textContent`); !strings.Contains(got, "401") {
		t.Errorf("before a token the page says %q, want the 401 problem", got)
	}
	tb.run("sign in with a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-a-token"+kb.Enter))
	tb.waitJS("the 401 problem again", `document.getElementById("token")?.value === "" && document.querySelector(".signin .problem")?.textContent.includes("401 Unauthorized")`)
	if got := eval[string](tb, "read the problem", `document.querySelector(".signin .problem").textContent`); !strings.Contains(got, "a valid bearer token is required") {
		t.Errorf("after a wrong token the page says %q, want the API's 401 problem", got)
	}
	tb.run("sign in with alice's token", chromedp.SendKeys(chromedp.ID("token"), alice), chromedp.Click(chromedp.CSS(".signin button[type=submit]")))
	tb.waitJS("alice's tasks", fmt.Sprintf(`document.querySelector('tr[data-task="%s"]')`, aliceTask.ID))
	if n := eval[int](tb, "count the rows", `document.querySelectorAll("table.tasks tbody tr").length`); n != 1 {
		t.Errorf("alice sees %d tasks, want her one", n)
	}
	if eval[bool](tb, "look for bob's task", fmt.Sprintf(`document.body.textContent.includes("%s")`, bobTask.ID)) {
		t.Error("bob's task shows on alice's page")
	}
	// The token is the tab's alone.
	if got := eval[string](tb, "read the storage", `sessionStorage.getItem("fleetrun.token") + "|" + localStorage.length + "|" + document.cookie`); got != alice+"|0|" {
		t.Errorf("storage: %q, want the token in sessionStorage alone", got)
	}
	// Bob's task by its URL is a 404, as for any other caller.
	tb.expectStatus(http.StatusNotFound)
	tb.run("open bob's task", chromedp.Navigate(srv.base+"/ui/#/tasks/"+bobTask.ID))
	tb.waitJS("the 404 problem", `document.querySelector("main .problem")?.textContent.includes("404")`)
}
