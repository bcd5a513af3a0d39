package api_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestWireStatusesAreTheDomains ties the wire copies of the statuses to the domain's: every
// Status and Device constant of api.go (read from the source, so a constant added there alone is
// caught), api.Terminal, and the enums of openapi.yaml. A drift here would make a client wait
// forever for a status the server never sends.
func TestWireStatusesAreTheDomains(t *testing.T) {
	t.Parallel()
	statuses, devices := apiConstants(t)
	if want := strs(task.Statuses()); !slices.Equal(statuses, want) {
		t.Errorf("api.go's task statuses are %q, the domain's %q", statuses, want)
	}
	if want := strs(task.DeviceStatuses()); !slices.Equal(devices, want) {
		t.Errorf("api.go's device statuses are %q, the domain's %q", devices, want)
	}
	for _, s := range append(statuses, "paused", "") {
		if got, want := api.Terminal(s), task.Status(s).Terminal(); got != want {
			t.Errorf("api.Terminal(%q) = %v, the domain says %v", s, got, want)
		}
	}

	var terminal, open []string
	for _, s := range task.Statuses() {
		if s.Terminal() {
			terminal = append(terminal, string(s))
		} else {
			open = append(open, string(s))
		}
	}
	doc := openapi(t)
	for _, c := range []struct {
		path []string
		want []string
	}{
		{[]string{"components", "schemas", "TaskStatus", "enum"}, strs(task.Statuses())},
		{[]string{"components", "schemas", "DeviceStatus", "enum"}, strs(task.DeviceStatuses())},
		{[]string{"components", "schemas", "Result", "properties", "status", "enum"}, terminal},
		{[]string{"components", "responses", "NotFinished", "content", "application/problem+json", "schema", "allOf", "1",
			"properties", "taskStatus", "enum"}, open},
	} {
		if got := enum(t, doc, c.path); !slices.Equal(got, c.want) {
			t.Errorf("openapi.yaml %s = %q, the domain's %q", strings.Join(c.path, "."), got, c.want)
		}
	}
}

// apiConstants returns the values of api.go's Status* and Device* string constants, in order.
func apiConstants(t *testing.T) (statuses, devices []string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				switch {
				case strings.HasPrefix(name.Name, "Status"):
					statuses = append(statuses, v)
				case strings.HasPrefix(name.Name, "Device"):
					devices = append(devices, v)
				}
			}
		}
	}
	return statuses, devices
}

func openapi(t *testing.T) any {
	t.Helper()
	b, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// enum follows path through the document (a number indexes a list) to a list of strings.
func enum(t *testing.T, doc any, path []string) []string {
	t.Helper()
	node := doc
	for _, key := range path {
		switch n := node.(type) {
		case map[string]any:
			node = n[key]
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i >= len(n) {
				t.Fatalf("openapi.yaml: no item %s in %s", key, strings.Join(path, "."))
			}
			node = n[i]
		default:
			t.Fatalf("openapi.yaml: nothing at %s", strings.Join(path, "."))
		}
	}
	list, ok := node.([]any)
	if !ok {
		t.Fatalf("openapi.yaml: %s is not a list", strings.Join(path, "."))
	}
	out := make([]string, len(list))
	for i, v := range list {
		out[i], _ = v.(string)
	}
	return out
}

func strs[S ~string](list []S) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = string(s)
	}
	return out
}
