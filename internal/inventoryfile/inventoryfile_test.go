package inventoryfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/inventoryfile"
	"github.com/fleetrun/fleetrun/internal/task"
)

// sixDevices is an inventory of six devices in two tags.
const sixDevices = `devices:
  - {id: web-1, name: web-1.example, platform: Linux, tags: {Env: prod, Role: web}}
  - {id: web-2, tags: {Env: staging, Role: web}}
  - {id: db-1, tags: {Env: prod, Role: db}}
  - {id: db-2, tags: {Env: staging, Role: db}}
  - {id: cache-1, tags: {Env: prod, Role: cache}}
  - {id: edge-1, tags: {Role: web}}
`

func write(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "devices.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestResolveAndsTargetsAndOrsValues checks the targeting rule on an inventory of six devices
// in two tags.
func TestResolveAndsTargetsAndOrsValues(t *testing.T) {
	t.Parallel()
	inv, err := inventoryfile.Open(write(t, sixDevices), inventoryfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		targets []task.Target
		want    []string
	}{
		{"one tag", []task.Target{{Key: "tag:Env", Values: []string{"prod"}}}, []string{"web-1", "db-1", "cache-1"}},
		{"OR within values", []task.Target{{Key: "tag:Role", Values: []string{"web", "db"}}}, []string{"web-1", "web-2", "db-1", "db-2", "edge-1"}},
		{"AND across targets", []task.Target{{Key: "tag:Env", Values: []string{"prod"}}, {Key: "tag:Role", Values: []string{"web", "db"}}},
			[]string{"web-1", "db-1"}},
		{"a missing tag matches nothing", []task.Target{{Key: "tag:Env", Values: []string{"staging", "prod"}}, {Key: "tag:Role", Values: []string{"web"}}},
			[]string{"web-1", "web-2"}},
		{"no match", []task.Target{{Key: "tag:Env", Values: []string{"dev"}}}, nil},
	}
	for _, c := range cases {
		got, err := inv.Resolve(t.Context(), task.Resolution{Targets: c.targets, Limit: task.MaxDevices + 1})
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: Resolve = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if got, _ := inv.Resolve(t.Context(), task.Resolution{Targets: cases[1].targets, Limit: 2}); len(got) != 2 {
		t.Errorf("Resolve with a limit of 2 returned %v", got)
	}

	// Listing pages through the matches, and without targets through everything.
	page, err := inv.List(t.Context(), task.InventoryQuery{Targets: cases[1].targets, Limit: 2})
	if err != nil || len(page.Devices) != 2 || page.Next == "" {
		t.Fatalf("List = %+v, %v", page, err)
	}
	rest, err := inv.List(t.Context(), task.InventoryQuery{Targets: cases[1].targets, Limit: 5, Cursor: page.Next})
	if err != nil || len(rest.Devices) != 3 || rest.Next != "" || rest.Devices[2].ID != "edge-1" {
		t.Fatalf("List's next page = %+v, %v", rest, err)
	}
	all, _ := inv.List(t.Context(), task.InventoryQuery{})
	if len(all.Devices) != 6 || all.Devices[0].Name != "web-1.example" || all.Devices[0].Platform != "Linux" ||
		all.Devices[0].PingStatus != task.PingOnline || all.Devices[0].Tags["Role"] != "web" {
		t.Errorf("List of everything = %+v", all.Devices)
	}
	if _, err := inv.List(t.Context(), task.InventoryQuery{Cursor: "x"}); !task.IsCode(err, task.CodeInvalidQuery) {
		t.Errorf("a bad cursor: %v", err)
	}
}

// TestReloadKeepsTheLastGoodInventory reloads a changed file, then a broken one.
func TestReloadKeepsTheLastGoodInventory(t *testing.T) {
	t.Parallel()
	path := write(t, sixDevices)
	inv, err := inventoryfile.Open(path, inventoryfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prod := task.Resolution{Targets: []task.Target{{Key: "tag:Env", Values: []string{"prod"}}}, Limit: 100}
	if err := os.WriteFile(path, []byte("devices:\n  - {id: new-1, tags: {Env: prod}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := inv.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := inv.Resolve(t.Context(), prod); !slices.Equal(got, []string{"new-1"}) {
		t.Errorf("after a reload: %v", got)
	}
	for name, bad := range map[string]string{
		"bad id":        "devices:\n  - {id: 'a b'}\n",
		"duplicate":     "devices:\n  - {id: a}\n  - {id: a}\n",
		"unknown field": "devices:\n  - {id: a, colour: red}\n",
		"not yaml":      "devices: [",
	} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := inv.Reload(); err == nil {
			t.Errorf("%s: the reload succeeded", name)
		}
		if got, _ := inv.Resolve(t.Context(), prod); !slices.Equal(got, []string{"new-1"}) {
			t.Errorf("%s: a failed reload changed the inventory to %v", name, got)
		}
	}
	if _, err := inventoryfile.Open(filepath.Join(t.TempDir(), "missing.yaml"), inventoryfile.Options{}); err == nil ||
		!strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Open of a missing file: %v", err)
	}
}
