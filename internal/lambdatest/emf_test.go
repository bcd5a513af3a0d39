package lambdatest_test

// A parser of CloudWatch's embedded metric format, written from its specification, to hold the
// functions' metric lines to it: what CloudWatch Logs would reject is an error here.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/lambdatest"
	"github.com/fleetrun/fleetrun/internal/metrics"
)

// emfUnits are the units a MetricDefinition may name.
var emfUnits = map[string]bool{}

func init() {
	for u := range strings.SplitSeq("Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes "+
		"Bits Kilobits Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second "+
		"Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second "+
		"Terabits/Second Count/Second None", " ") {
		emfUnits[u] = true
	}
}

// emfMetric is one metric value a document carries, with its dimensions.
type emfMetric struct {
	Namespace  string
	Name       string
	Unit       string
	Dimensions map[string]string
	Values     []float64
}

// parseEMF parses one log line as an embedded metric format document and returns the metrics
// it defines. It enforces the specification's rules: the line is one JSON object and nothing
// else; _aws holds an integer Timestamp and a non-empty CloudWatchMetrics array; each
// MetricDirective has a Namespace, Dimensions (sets of at most 30 keys, each naming a string
// member of the root) and 1 to 100 Metrics, each naming a member of the root that is a number
// or an array of at most 100 numbers, with a known Unit and a StorageResolution of 1 or 60
// when given; and the objects the specification defines have no other members.
func parseEMF(line string) ([]emfMetric, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if rest := strings.TrimSpace(line[dec.InputOffset():]); rest != "" {
		return nil, fmt.Errorf("data after the JSON object: %q", rest)
	}
	meta, ok := root["_aws"].(map[string]any)
	if !ok {
		return nil, errors.New("no _aws metadata object")
	}
	if err := onlyMembers(meta, "Timestamp", "CloudWatchMetrics", "LogGroupName", "LogStreamName"); err != nil {
		return nil, fmt.Errorf("_aws: %w", err)
	}
	ts, ok := meta["Timestamp"].(json.Number)
	if _, err := ts.Int64(); !ok || err != nil {
		return nil, fmt.Errorf("_aws.Timestamp %v is not milliseconds since the epoch", meta["Timestamp"])
	}
	directives, ok := meta["CloudWatchMetrics"].([]any)
	if !ok || len(directives) == 0 {
		return nil, errors.New("_aws.CloudWatchMetrics is not a non-empty array")
	}
	var out []emfMetric
	for i, d := range directives {
		dir, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("CloudWatchMetrics[%d] is not an object", i)
		}
		if err := onlyMembers(dir, "Namespace", "Dimensions", "Metrics"); err != nil {
			return nil, fmt.Errorf("CloudWatchMetrics[%d]: %w", i, err)
		}
		ns, ok := dir["Namespace"].(string)
		if !ok || ns == "" || len(ns) > 255 {
			return nil, fmt.Errorf("CloudWatchMetrics[%d].Namespace %v", i, dir["Namespace"])
		}
		sets, ok := dir["Dimensions"].([]any)
		if !ok {
			return nil, fmt.Errorf("CloudWatchMetrics[%d].Dimensions is not an array", i)
		}
		var dimSets []map[string]string
		for j, s := range sets {
			keys, ok := s.([]any)
			if !ok || len(keys) > 30 {
				return nil, fmt.Errorf("CloudWatchMetrics[%d].Dimensions[%d] is not an array of at most 30 keys", i, j)
			}
			dims := map[string]string{}
			for _, k := range keys {
				key, _ := k.(string)
				value, ok := root[key].(string)
				if !ok || value == "" || len(value) > 1024 {
					return nil, fmt.Errorf("dimension %v does not name a string member of the root", k)
				}
				dims[key] = value
			}
			dimSets = append(dimSets, dims)
		}
		defs, ok := dir["Metrics"].([]any)
		if !ok || len(defs) == 0 || len(defs) > 100 {
			return nil, fmt.Errorf("CloudWatchMetrics[%d].Metrics is not an array of 1 to 100 definitions", i)
		}
		for _, def := range defs {
			m, ok := def.(map[string]any)
			if !ok {
				return nil, errors.New("a MetricDefinition is not an object")
			}
			if err := onlyMembers(m, "Name", "Unit", "StorageResolution"); err != nil {
				return nil, fmt.Errorf("MetricDefinition: %w", err)
			}
			name, _ := m["Name"].(string)
			if name == "" || len(name) > 1024 {
				return nil, fmt.Errorf("MetricDefinition.Name %v", m["Name"])
			}
			unit, hasUnit := m["Unit"].(string)
			if _, set := m["Unit"]; set && (!hasUnit || !emfUnits[unit]) {
				return nil, fmt.Errorf("metric %s: unit %v", name, m["Unit"])
			}
			if r, set := m["StorageResolution"]; set && fmt.Sprint(r) != "1" && fmt.Sprint(r) != "60" {
				return nil, fmt.Errorf("metric %s: StorageResolution %v", name, r)
			}
			values, err := metricValues(root[name])
			if err != nil {
				return nil, fmt.Errorf("metric %s: %w", name, err)
			}
			for _, dims := range dimSets {
				out = append(out, emfMetric{Namespace: ns, Name: name, Unit: unit, Dimensions: dims, Values: values})
			}
		}
	}
	return out, nil
}

// metricValues reads a metric's target member: a number, or an array of at most 100 numbers.
func metricValues(v any) ([]float64, error) {
	list, isList := v.([]any)
	if !isList {
		list = []any{v}
	}
	if len(list) == 0 || len(list) > 100 {
		return nil, fmt.Errorf("%d values, want 1 to 100", len(list))
	}
	var out []float64
	for _, e := range list {
		n, ok := e.(json.Number)
		if !ok {
			return nil, fmt.Errorf("value %v is not a number", e)
		}
		f, err := n.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("value %v is not a finite number", e)
		}
		out = append(out, f)
	}
	return out, nil
}

func onlyMembers(obj map[string]any, allowed ...string) error {
	for k := range obj {
		if !strings.Contains(" "+strings.Join(allowed, " ")+" ", " "+k+" ") {
			return fmt.Errorf("unexpected member %q", k)
		}
	}
	return nil
}

func TestParseEMF(t *testing.T) {
	t.Parallel()
	valid := `{"_aws":{"Timestamp":1795694400000,"CloudWatchMetrics":[{"Namespace":"ns","Dimensions":[["status"],[]],` +
		`"Metrics":[{"Name":"m","Unit":"Count"},{"Name":"d","Unit":"Seconds","StorageResolution":60}]}]},"status":"ok","m":1,"d":[0.5,2]}`
	got, err := parseEMF(valid)
	if err != nil || len(got) != 4 || got[0].Dimensions["status"] != "ok" || len(got[1].Dimensions) != 0 ||
		len(got[2].Values) != 2 || got[2].Unit != "Seconds" {
		t.Errorf("parseEMF(valid) = %+v, %v", got, err)
	}
	invalid := map[string]string{
		"trailing data":       valid + ` x`,
		"no _aws":             `{"m":1}`,
		"timestamp string":    strings.Replace(valid, `1795694400000`, `"now"`, 1),
		"no directives":       `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]}}`,
		"missing dimension":   strings.Replace(valid, `"status":"ok",`, ``, 1),
		"numeric dimension":   strings.Replace(valid, `"status":"ok"`, `"status":3`, 1),
		"missing value":       strings.Replace(valid, `"m":1,`, ``, 1),
		"string value":        strings.Replace(valid, `"m":1`, `"m":"1"`, 1),
		"bad unit":            strings.Replace(valid, `"Unit":"Count"`, `"Unit":"Tasks"`, 1),
		"bad resolution":      strings.Replace(valid, `"StorageResolution":60`, `"StorageResolution":5`, 1),
		"extra member":        strings.Replace(valid, `"Namespace":"ns",`, `"Namespace":"ns","Extra":1,`, 1),
		"no namespace":        strings.Replace(valid, `"Namespace":"ns",`, ``, 1),
		"dimensions not sets": strings.Replace(valid, `[["status"],[]]`, `["status"]`, 1),
	}
	for name, line := range invalid {
		if _, err := parseEMF(line); err == nil {
			t.Errorf("%s: parseEMF accepted %s", name, line)
		}
	}
}

// emittedMetrics parses every embedded-metric-format line in the functions' logs, failing the
// test for any line that does not follow the specification, and returns the metrics by name.
func emittedMetrics(t *testing.T, fns map[string]*lambdatest.Emulator) map[string][]emfMetric {
	t.Helper()
	byName := map[string][]emfMetric{}
	for id, fn := range fns {
		for line := range strings.SplitSeq(fn.Logs(), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"_aws"`) {
				continue
			}
			ms, err := parseEMF(line)
			if err != nil {
				t.Errorf("%s wrote an invalid metric line: %v\n%s", id, err, line)
				continue
			}
			for _, m := range ms {
				byName[m.Name] = append(byName[m.Name], m)
			}
		}
	}
	return byName
}

// checkMetrics holds the metric lines the functions wrote during TestLocalInvoke to what
// happened there: two tasks submitted and dispatched, one SendCommand throttled once, the first
// task completed on its three devices and the second cancelled on its two.
func checkMetrics(t *testing.T, fns map[string]*lambdatest.Emulator, namespace string) {
	t.Helper()
	got := emittedMetrics(t, fns)
	for _, m := range metrics.All {
		if len(got[m.Name]) == 0 {
			t.Errorf("no function wrote %s", m.Name)
		}
	}
	sum := func(name string, dims map[string]string) float64 {
		total := 0.0
		for _, m := range got[name] {
			if m.Namespace != namespace {
				t.Errorf("%s in namespace %q, want %q", name, m.Namespace, namespace)
			}
			if fmt.Sprint(m.Dimensions) == fmt.Sprint(dims) {
				for _, v := range m.Values {
					total += v
				}
			}
		}
		return total
	}
	none := map[string]string{}
	status := func(s string) map[string]string { return map[string]string{metrics.Status: s} }
	checks := []struct {
		name string
		dims map[string]string
		want float64
	}{
		{metrics.TasksSubmitted, none, 2},
		{metrics.TasksFinished, status("completed"), 1},
		{metrics.TasksFinished, status("cancelled"), 1},
		{metrics.DevicesFinished, status("succeeded"), 3},
		{metrics.DevicesFinished, status("cancelled"), 2},
		{metrics.SSMThrottles, none, 1},
	}
	for _, c := range checks {
		if s := sum(c.name, c.dims); s != c.want {
			t.Errorf("%s%v summed to %v, want %v", c.name, c.dims, s, c.want)
		}
	}
	if n := len(got[metrics.DispatchLatency]); n != 2 {
		t.Errorf("%d dispatch latencies, want one per task", n)
	}
	if n := len(got[metrics.TaskDuration]); n != 2 {
		t.Errorf("%d task durations, want one per task", n)
	}
	var buf bytes.Buffer
	for name, ms := range got {
		fmt.Fprintf(&buf, "%s: %d values\n", name, len(ms))
	}
	t.Logf("metric lines in the functions' logs:\n%s", buf.String())
}
