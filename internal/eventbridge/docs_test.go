package eventbridge

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/task"
)

// docPath is the page that documents the event; these tests keep it true.
const docPath = "../../docs/events.md"

// docJSONBlocks returns the ```json blocks of the events page.
func docJSONBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read the events page: %v", err)
	}
	var blocks []string
	parts := strings.Split(string(b), "```json\n")
	for _, p := range parts[1:] {
		end := strings.Index(p, "```")
		if end < 0 {
			t.Fatalf("unterminated json block in %s", docPath)
		}
		blocks = append(blocks, p[:end])
	}
	return blocks
}

// docPatterns returns the event patterns of the example rules, each with the statuses its
// detail.status filter names.
func docPatterns(t *testing.T) map[string][]task.Status {
	t.Helper()
	patterns := map[string][]task.Status{}
	for _, b := range docJSONBlocks(t) {
		var p struct {
			Source []string `json:"source"`
			Detail struct {
				Status []task.Status `json:"status"`
			} `json:"detail"`
		}
		if json.Unmarshal([]byte(b), &p) == nil && len(p.Source) > 0 {
			patterns[b] = p.Detail.Status
		}
	}
	if len(patterns) == 0 {
		t.Fatalf("%s has no example rule pattern", docPath)
	}
	return patterns
}

// keys returns the object keys of a JSON value, nested ones as "parent.child".
func keys(prefix string, v any) []string {
	var out []string
	if m, ok := v.(map[string]any); ok {
		for k, child := range m {
			out = append(out, prefix+k)
			out = append(out, keys(prefix+k+".", child)...)
		}
	}
	slices.Sort(out)
	return out
}

func TestDocExampleEventMatchesTheSchema(t *testing.T) {
	t.Parallel()
	var example string
	for _, b := range docJSONBlocks(t) {
		if strings.Contains(b, `"schemaVersion"`) {
			example = b
		}
	}
	var ev struct {
		Source     string          `json:"source"`
		DetailType string          `json:"detail-type"`
		Resources  []string        `json:"resources"`
		Detail     json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal([]byte(example), &ev); err != nil {
		t.Fatalf("example event: %v", err)
	}
	if ev.Source != Source || ev.DetailType != DetailType || ev.Resources == nil || len(ev.Resources) != 0 {
		t.Errorf("example envelope: source %q detail-type %q resources %v", ev.Source, ev.DetailType, ev.Resources)
	}
	d := decodeStrict(t, string(ev.Detail))
	if d.ID != task.NotificationID(d.TaskID, d.Status) || d.SchemaVersion != SchemaVersion {
		t.Errorf("example id %q or schema version %d is not what the code writes", d.ID, d.SchemaVersion)
	}

	// The example has every field the code writes, and no other.
	var doc, written any
	_ = json.Unmarshal(ev.Detail, &doc)
	s, err := encode(d)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(s), &written)
	if got, want := keys("", doc), keys("", written); !slices.Equal(got, want) {
		t.Errorf("example detail fields %v, the code writes %v", got, want)
	}
}

func TestDocDescribesEveryField(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Detail](), reflect.TypeFor[Counts](), reflect.TypeFor[Result]()} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !strings.Contains(string(b), "| `"+name+"` |") {
				t.Errorf("%s does not describe %s.%s (`%s`) in a table", docPath, typ.Name(), f.Name, name)
			}
		}
	}
	// Every example rule names only terminal statuses.
	for p, statuses := range docPatterns(t) {
		for _, s := range statuses {
			if !s.Terminal() {
				t.Errorf("example rule filters on %q, which never gets an event:\n%s", s, p)
			}
		}
	}
}
