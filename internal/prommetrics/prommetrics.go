// Package prommetrics records fleetrun's metrics (package metrics) for `fleetrun serve` and
// serves them in Prometheus text format, with the Go runtime's and the process's own metrics.
// The metrics are built from the catalogue in package metrics, so both homes expose the same
// names.
package prommetrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/metrics"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Buckets of the distributions, in seconds. A dispatch takes milliseconds locally and seconds
// behind a queue; a task takes from seconds to the 48-hour limit of timeoutSeconds.
var (
	dispatchBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	durationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600}
)

// Recorder holds the metrics in a registry of its own. It implements engine.Metrics and
// ssmrun.ThrottleObserver and is safe for concurrent use.
type Recorder struct {
	reg      *prometheus.Registry
	counters map[string]*prometheus.CounterVec
	histos   map[string]*prometheus.HistogramVec
}

var (
	_ engine.Metrics          = (*Recorder)(nil)
	_ ssmrun.ThrottleObserver = (*Recorder)(nil)
)

// New returns a Recorder with every metric of package metrics registered. The status series
// of every terminal status exist from the start, at zero, so that a rate can be taken before
// the first task ends.
func New() *Recorder {
	r := &Recorder{reg: prometheus.NewRegistry(), counters: map[string]*prometheus.CounterVec{},
		histos: map[string]*prometheus.HistogramVec{}}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, m := range metrics.All {
		switch m.Kind {
		case metrics.Counter:
			c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: m.Name, Help: m.Help}, m.Labels)
			r.reg.MustRegister(c)
			r.counters[m.Name] = c
		case metrics.Distribution:
			buckets := durationBuckets
			if m.Name == metrics.DispatchLatency {
				buckets = dispatchBuckets
			}
			h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: m.Name, Help: m.Help, Buckets: buckets}, m.Labels)
			r.reg.MustRegister(h)
			r.histos[m.Name] = h
		}
	}
	for _, m := range metrics.All {
		for _, labels := range r.series(m) {
			if c, ok := r.counters[m.Name]; ok {
				c.WithLabelValues(labels...)
			} else {
				r.histos[m.Name].WithLabelValues(labels...)
			}
		}
	}
	return r
}

// series lists the label values of every series of m that exists before anything happens.
func (r *Recorder) series(m metrics.Metric) [][]string {
	if len(m.Labels) == 0 {
		return [][]string{{}}
	}
	var out [][]string
	if m.Name == metrics.DevicesFinished {
		for _, d := range task.DeviceStatuses() {
			if d.Terminal() {
				out = append(out, []string{string(d)})
			}
		}
		return out
	}
	for _, s := range task.Statuses() {
		if s.Terminal() {
			out = append(out, []string{string(s)})
		}
	}
	return out
}

// Handler serves the metrics in the Prometheus text format (or OpenMetrics, when asked).
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// TaskSubmitted implements engine.Metrics.
func (r *Recorder) TaskSubmitted(context.Context) {
	r.counters[metrics.TasksSubmitted].WithLabelValues().Inc()
}

// TaskDispatched implements engine.Metrics.
func (r *Recorder) TaskDispatched(_ context.Context, latency time.Duration) {
	r.histos[metrics.DispatchLatency].WithLabelValues().Observe(latency.Seconds())
}

// TaskFinished implements engine.Metrics.
func (r *Recorder) TaskFinished(_ context.Context, status task.Status, duration time.Duration, devices task.Counts) {
	r.counters[metrics.TasksFinished].WithLabelValues(string(status)).Inc()
	r.histos[metrics.TaskDuration].WithLabelValues(string(status)).Observe(duration.Seconds())
	for _, d := range task.DeviceStatuses() {
		if n := devices.Of(d); d.Terminal() && n > 0 {
			r.counters[metrics.DevicesFinished].WithLabelValues(string(d)).Add(float64(n))
		}
	}
}

// SSMThrottled implements ssmrun.ThrottleObserver.
func (r *Recorder) SSMThrottled(context.Context, string) {
	r.counters[metrics.SSMThrottles].WithLabelValues().Inc()
}
