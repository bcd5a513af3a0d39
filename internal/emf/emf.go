// Package emf records fleetrun's metrics (package metrics) as CloudWatch embedded metric format
// lines: JSON objects that CloudWatch Logs turns into metrics when a Lambda function writes them
// to standard output. Recording a metric is a write to the function's log, never an API call,
// so it costs no request and no time on the invocation's path.
//
// Each event is one line with one metric directive: its dimensions (none, or the status), the
// metric values, and, where it helps a search in Logs Insights, plain properties beside them.
package emf

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/metrics"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Recorder writes metric lines. It implements engine.Metrics and ssmrun.ThrottleObserver and
// is safe for concurrent use.
type Recorder struct {
	mu        sync.Mutex
	w         io.Writer
	namespace string
	now       func() time.Time
	units     map[string]string
}

var (
	_ engine.Metrics          = (*Recorder)(nil)
	_ ssmrun.ThrottleObserver = (*Recorder)(nil)
)

// Config wires a Recorder. Out is required.
type Config struct {
	// Out receives the lines: standard output on Lambda. Each line is written with one Write
	// call; a writer shared with a logger must serialise writes itself, as the functions' does.
	Out io.Writer
	// Namespace is the CloudWatch namespace of the metrics; "fleetrun" when empty.
	Namespace string
	// Now is the clock of the lines' timestamps; time.Now when nil.
	Now func() time.Time
}

// New returns a Recorder for cfg.
func New(cfg Config) *Recorder {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "fleetrun"
	}
	units := map[string]string{}
	for _, m := range metrics.All {
		units[m.Name] = m.Unit
	}
	return &Recorder{w: cfg.Out, namespace: cfg.Namespace, now: cfg.Now, units: units}
}

// TaskSubmitted implements engine.Metrics.
func (r *Recorder) TaskSubmitted(context.Context) {
	r.write(nil, map[string]float64{metrics.TasksSubmitted: 1}, nil)
}

// TaskDispatched implements engine.Metrics.
func (r *Recorder) TaskDispatched(_ context.Context, latency time.Duration) {
	r.write(nil, map[string]float64{metrics.DispatchLatency: latency.Seconds()}, nil)
}

// TaskFinished implements engine.Metrics: one line for the task, and one for each final device
// status that any of its devices ended in.
func (r *Recorder) TaskFinished(_ context.Context, status task.Status, duration time.Duration, devices task.Counts) {
	r.write(map[string]string{metrics.Status: string(status)},
		map[string]float64{metrics.TasksFinished: 1, metrics.TaskDuration: duration.Seconds()}, nil)
	for _, d := range task.DeviceStatuses() {
		if n := devices.Of(d); d.Terminal() && n > 0 {
			r.write(map[string]string{metrics.Status: string(d)}, map[string]float64{metrics.DevicesFinished: float64(n)}, nil)
		}
	}
}

// SSMThrottled implements ssmrun.ThrottleObserver. The operation is a property of the line,
// not a dimension, so that it costs no extra metric but still shows in a search.
func (r *Recorder) SSMThrottled(_ context.Context, operation string) {
	r.write(nil, map[string]float64{metrics.SSMThrottles: 1}, map[string]string{"operation": operation})
}

// write writes one line: the _aws metadata with one directive for values under dims, and the
// dimension values, metric values and properties as members of the root object.
func (r *Recorder) write(dims map[string]string, values map[string]float64, props map[string]string) {
	root := map[string]any{}
	for k, v := range props {
		root[k] = v
	}
	for k, v := range dims {
		root[k] = v
	}
	keys := slices.Sorted(maps.Keys(dims))
	defs := []metricDefinition{}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		defs = append(defs, metricDefinition{Name: name, Unit: r.units[name]})
		root[name] = values[name]
	}
	if keys == nil {
		keys = []string{} // a dimension set with no dimension, [[]], not [null]
	}
	root["_aws"] = metadata{
		Timestamp: r.now().UnixMilli(),
		CloudWatchMetrics: []directive{{
			Namespace:  r.namespace,
			Dimensions: [][]string{keys},
			Metrics:    defs,
		}},
	}
	line, err := json.Marshal(root)
	if err != nil {
		return // only strings and finite numbers go in: this cannot fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(append(line, '\n'))
}

// metadata is the _aws member of a line.
type metadata struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

// directive is a MetricDirective: which root members are metrics, and their dimensions.
type directive struct {
	Namespace  string             `json:"Namespace"`
	Dimensions [][]string         `json:"Dimensions"`
	Metrics    []metricDefinition `json:"Metrics"`
}

type metricDefinition struct {
	Name string `json:"Name"`
	Unit string `json:"Unit,omitempty"`
}
