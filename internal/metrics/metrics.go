// Package metrics names what fleetrun measures, once for both of its homes: the Lambda
// functions write these metrics as CloudWatch embedded metric format lines (package emf), and
// `fleetrun serve` exposes them at GET /metrics in Prometheus text format (package
// prommetrics), under the same names, so that one dashboard or query reads either.
//
// The engine says when something happened (engine.Metrics) and the SSM runner when SSM
// throttled a request (ssmrun.ThrottleObserver); the adapters record it.
package metrics

// The metric names. Counters end in _total and durations are in seconds, as Prometheus names
// them; CloudWatch takes the same names in the stack's own namespace.
const (
	// TasksSubmitted counts tasks stored by a submit (an idempotent replay is not counted).
	TasksSubmitted = "fleetrun_tasks_submitted_total"
	// TasksFinished counts tasks that reached a terminal status, by Status.
	TasksFinished = "fleetrun_tasks_finished_total"
	// DevicesFinished counts the devices of finished tasks by their final status, when their
	// task ends.
	DevicesFinished = "fleetrun_devices_finished_total"
	// DispatchLatency is the time from a task's submission to its first command sent to SSM
	// (on AWS) or its first device started (locally).
	DispatchLatency = "fleetrun_dispatch_latency_seconds"
	// TaskDuration is the time from a task's submission to its terminal status, by Status.
	TaskDuration = "fleetrun_task_duration_seconds"
	// SSMThrottles counts SSM requests that SSM refused with throttling, retried ones
	// included. It stays at zero locally, where there is no SSM.
	SSMThrottles = "fleetrun_ssm_throttles_total"
)

// Status is the label (Prometheus) or dimension (CloudWatch) that holds a task's or a
// device's status.
const Status = "status"

// Kind is how a metric accumulates.
type Kind int

const (
	// Counter only goes up; each event adds to it.
	Counter Kind = iota
	// Distribution is one observation per event (a Prometheus histogram, CloudWatch
	// percentiles).
	Distribution
)

// Metric describes one metric.
type Metric struct {
	Name string
	Help string
	Kind Kind
	// Unit is the CloudWatch unit of a value: Count or Seconds.
	Unit string
	// Labels are the metric's labels (dimensions), none or Status.
	Labels []string
}

// All lists every metric fleetrun records.
var All = []Metric{
	{TasksSubmitted, "Tasks stored by a submit; an idempotent replay is not counted.", Counter, "Count", nil},
	{TasksFinished, "Tasks that reached a terminal status, by status.", Counter, "Count", []string{Status}},
	{DevicesFinished, "Devices of finished tasks by their final status, counted when the task ends.", Counter, "Count", []string{Status}},
	{DispatchLatency, "Seconds from a task's submission to its first command or started device.", Distribution, "Seconds", nil},
	{TaskDuration, "Seconds from a task's submission to its terminal status, by status.", Distribution, "Seconds", []string{Status}},
	{SSMThrottles, "SSM requests refused with throttling, retried ones included (zero without SSM).", Counter, "Count", nil},
}
