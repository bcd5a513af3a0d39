package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

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
