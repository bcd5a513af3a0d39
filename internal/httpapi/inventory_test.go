package httpapi

import (
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/api"
)

// TestInventoryWithoutOne checks a server without an inventory: GET /devices is a 404 and a
// submit with targets a 422 that says why; deviceIds still work.
func TestInventoryWithoutOne(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{noInventory: true})
	r := b.do(req{method: "GET", path: "/devices", token: aliceToken})
	if p := decode[api.Problem](t, r); r.StatusCode != 404 || !strings.Contains(p.Detail, "--inventory") {
		t.Errorf("GET /devices without an inventory: %d %s", r.StatusCode, r.body)
	}
	r = b.do(req{method: "POST", path: "/tasks", token: aliceToken,
		body: `{"targets":[{"key":"tag:Env","values":["prod"]}],"scriptUrl":"scripts/patch.sh"}`})
	p := decode[api.Problem](t, r)
	if r.StatusCode != 422 || len(p.Errors) != 1 || p.Errors[0].Pointer != "/targets" || !strings.Contains(p.Errors[0].Detail, "inventory") {
		t.Errorf("targets without an inventory: %d %s", r.StatusCode, r.body)
	}
	if b.queue.len() != 0 {
		t.Errorf("a refused submit queued %d messages", b.queue.len())
	}
	if r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: submitBody("web-1")}); r.StatusCode != 202 {
		t.Errorf("a submit with deviceIds: %d %s", r.StatusCode, r.body)
	}
}

// TestInventoryFiltersAreChecked checks the tag filters of GET /devices and the targets of a
// submit the same way.
func TestInventoryFiltersAreChecked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/devices?tag:=x", "/devices?tag:Env=", "/devices?tag:Env=a&tag:Env=b", "/devices?limit=0"} {
		if r := b.do(req{method: "GET", path: path, token: aliceToken}); r.StatusCode != 400 {
			t.Errorf("GET %s: %d %s", path, r.StatusCode, r.body)
		}
	}
	r := b.do(req{method: "GET", path: "/devices?tag:Env=prod&tag:Role=db", token: aliceToken})
	if list := decode[api.InventoryList](t, r); len(list.Items) != 1 || list.Items[0].ID != "db-1" || list.Items[0].PingStatus != "Online" {
		t.Errorf("GET /devices by two tags: %s", r.body)
	}
	for _, body := range []string{
		`{"targets":[],"scriptUrl":"scripts/patch.sh"}`,
		`{"targets":[{"key":"Env","values":["prod"]}],"scriptUrl":"scripts/patch.sh"}`,
		`{"targets":[{"key":"tag:Env","values":[]}],"scriptUrl":"scripts/patch.sh"}`,
		`{"targets":[{"key":"tag:Env","values":["prod"],"op":"in"}],"scriptUrl":"scripts/patch.sh"}`,
		`{"targets":[{"key":"tag:A","values":["1"]},{"key":"tag:B","values":["1"]},{"key":"tag:C","values":["1"]},{"key":"tag:D","values":["1"]},{"key":"tag:E","values":["1"]},{"key":"tag:F","values":["1"]}],"scriptUrl":"scripts/patch.sh"}`,
		`{"deviceIds":["web-1"],"includeOffline":true,"scriptUrl":"scripts/patch.sh"}`,
	} {
		if r := b.do(req{method: "POST", path: "/tasks", token: aliceToken, body: body}); r.StatusCode != 422 {
			t.Errorf("submit %s: %d %s", body, r.StatusCode, r.body)
		}
	}
	if b.queue.len() != 0 {
		t.Errorf("refused submits queued %d messages", b.queue.len())
	}
}
