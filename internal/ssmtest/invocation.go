package ssmtest

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Outcome is how a scripted device's invocation ends.
type Outcome int

const (
	// Success ends the invocation Success with response code 0.
	Success Outcome = iota
	// Failed ends it Failed with the script's ExitCode (1 when ExitCode is 0).
	Failed
	// TimedOut ends it TimedOut with status details ExecutionTimedOut: the script started but
	// ran past its execution timeout.
	TimedOut
	// DeliveryTimedOut ends it TimedOut with status details DeliveryTimedOut: the agent never
	// picked the command up before the delivery timeout.
	DeliveryTimedOut
	// Undeliverable ends it as SSM reports a node it cannot reach: status Failed, status details
	// Undeliverable, response code -1.
	Undeliverable
	// Terminated ends it as SSM reports an invocation it skipped because the command exceeded
	// MaxErrors: status Cancelled, status details Terminated.
	Terminated
	// Never keeps the invocation InProgress until it is cancelled.
	Never
	// Invalid makes SendCommand refuse every command that names the device with
	// InvalidInstanceId, as SSM does for an id that is not a managed node in a valid state.
	Invalid
	// Offline is a managed node that is switched off: it never picks the command up, so its
	// invocation stays Pending until the command's delivery timeout (SendCommand's
	// TimeoutSeconds) has passed on the server's clock, and then ends TimedOut with status
	// details DeliveryTimedOut. Polls does not apply.
	Offline
)

// String implements fmt.Stringer.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "Success"
	case Failed:
		return "Failed"
	case TimedOut:
		return "TimedOut"
	case DeliveryTimedOut:
		return "DeliveryTimedOut"
	case Undeliverable:
		return "Undeliverable"
	case Terminated:
		return "Terminated"
	case Never:
		return "Never"
	case Invalid:
		return "Invalid"
	case Offline:
		return "Offline"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Script is how one device behaves. Its invocation is Pending until the first
// ListCommandInvocations call that returns it, InProgress for Polls such calls, and reaches
// Outcome on the next one. Stdout and Stderr are what the script writes.
type Script struct {
	Polls    int
	Outcome  Outcome
	ExitCode int
	Stdout   string
	Stderr   string
}

// DefaultScript is what a device without a script does: it succeeds after one poll.
var DefaultScript = Script{Polls: 1, Outcome: Success}

// Invocation statuses and status details as the SSM API reports them.
const (
	StatusPending    = "Pending"
	StatusInProgress = "InProgress"
	StatusDelayed    = "Delayed"
	StatusSuccess    = "Success"
	StatusCancelled  = "Cancelled"
	StatusTimedOut   = "TimedOut"
	StatusFailed     = "Failed"
	StatusCancelling = "Cancelling"

	DetailsUndeliverable     = "Undeliverable"
	DetailsTerminated        = "Terminated"
	DetailsDeliveryTimedOut  = "DeliveryTimedOut"
	DetailsExecutionTimedOut = "ExecutionTimedOut"
)

// Output limits of the service: the plugin output in ListCommandInvocations holds stdout and
// stderr together, cut at 2,500 characters; GetCommandInvocation returns the first 24,000
// characters of stdout and 8,000 of stderr.
const (
	PluginOutputLimit = 2500
	StdoutLimit       = 24000
	StderrLimit       = 8000
	// ErrorSeparator is what the agent puts between stdout and stderr in a plugin's output.
	ErrorSeparator = "\n----------ERROR-------\n"
	// TruncatedMarker ends a plugin output that was cut.
	TruncatedMarker = "\n---Output truncated---"
)

// invocation is one device's copy of a command.
type invocation struct {
	cmd        *command
	instanceID string
	script     Script
	seen       int
	status     string
	details    string
	code       int
	started    time.Time
	finished   time.Time
}

func terminal(status string) bool {
	switch status {
	case StatusSuccess, StatusCancelled, StatusTimedOut, StatusFailed:
		return true
	}
	return false
}

// delivered reports whether the script ever started on the device.
func (inv *invocation) delivered() bool { return !inv.started.IsZero() }

// observe is one ListCommandInvocations call seeing the invocation: it moves the script on.
// It reports whether the status changed.
func (inv *invocation) observe(now time.Time) bool {
	if terminal(inv.status) {
		return false
	}
	if inv.status == StatusCancelling {
		return inv.set(now, StatusCancelled, StatusCancelled, -1)
	}
	inv.seen++
	s := inv.script
	if s.Outcome == Offline {
		return inv.deliveryDue(now)
	}
	if inv.seen <= s.Polls || s.Outcome == Never {
		switch s.Outcome {
		case DeliveryTimedOut, Undeliverable:
			// The agent never gets these: SSM keeps trying to deliver, then gives up.
			return inv.set(now, StatusDelayed, StatusDelayed, -1)
		case Terminated:
			// SSM holds these back, then skips them once the command exceeds MaxErrors.
			return inv.set(now, StatusPending, StatusPending, -1)
		}
		if inv.started.IsZero() {
			inv.started = now
		}
		return inv.set(now, StatusInProgress, StatusInProgress, -1)
	}
	return inv.finish(now)
}

// deliveryDue ends an offline device's invocation once its command's delivery timeout has
// passed; until then it stays Pending. It reports whether the status changed.
func (inv *invocation) deliveryDue(now time.Time) bool {
	if now.Before(inv.cmd.requested.Add(time.Duration(inv.cmd.TimeoutSeconds) * time.Second)) {
		return false
	}
	return inv.set(now, StatusTimedOut, DetailsDeliveryTimedOut, -1)
}

// finish moves the invocation to its scripted outcome.
func (inv *invocation) finish(now time.Time) bool {
	s := inv.script
	run := func() {
		if inv.started.IsZero() {
			inv.started = now
		}
	}
	switch s.Outcome {
	case Success:
		run()
		return inv.set(now, StatusSuccess, StatusSuccess, 0)
	case Failed:
		run()
		code := s.ExitCode
		if code == 0 {
			code = 1
		}
		return inv.set(now, StatusFailed, StatusFailed, code)
	case TimedOut:
		run()
		code := s.ExitCode
		if code == 0 {
			code = -1
		}
		return inv.set(now, StatusTimedOut, DetailsExecutionTimedOut, code)
	case DeliveryTimedOut:
		return inv.set(now, StatusTimedOut, DetailsDeliveryTimedOut, -1)
	case Undeliverable:
		return inv.set(now, StatusFailed, DetailsUndeliverable, -1)
	case Terminated:
		return inv.set(now, StatusCancelled, DetailsTerminated, -1)
	case Offline:
		return inv.deliveryDue(now)
	}
	return false
}

func (inv *invocation) set(now time.Time, status, details string, code int) bool {
	if inv.status == status && inv.details == details {
		return false
	}
	inv.status, inv.details, inv.code = status, details, code
	if terminal(status) {
		inv.finished = now
	}
	return true
}

// cancel asks the invocation to stop; it reports Cancelling until it is next observed.
func (inv *invocation) cancel(now time.Time) bool {
	if terminal(inv.status) || inv.status == StatusCancelling {
		return false
	}
	return inv.set(now, StatusCancelling, StatusCancelling, -1)
}

// plugins are the steps of the invocation's document, as ListCommandInvocations reports them
// with Details. AWS-RunRemoteScript downloads the script in one step and runs it in another.
func (inv *invocation) plugins(region string) []commandPluginJSON {
	c := inv.cmd
	script := commandPluginJSON{Name: scriptPlugin(c.DocumentName), Status: inv.pluginStatus(),
		StatusDetails: inv.details, ResponseCode: inv.code, ResponseStartDateTime: stamp(inv.started),
		ResponseFinishDateTime: stamp(inv.finished), OutputS3BucketName: c.OutputS3BucketName,
		OutputS3KeyPrefix: c.OutputS3KeyPrefix}
	if inv.delivered() {
		script.Output = pluginOutput(inv.script.Stdout, inv.script.Stderr)
	}
	if c.OutputS3BucketName != "" {
		script.OutputS3Region = region
		script.StandardOutputUrl = inv.outputURL(region, "stdout")
		script.StandardErrorUrl = inv.outputURL(region, "stderr")
	}
	if c.DocumentName != RemoteScriptDocument {
		return []commandPluginJSON{script}
	}
	download := commandPluginJSON{Name: "downloadContent", Status: StatusPending, StatusDetails: StatusPending, ResponseCode: -1}
	if inv.delivered() {
		download.Status, download.StatusDetails, download.ResponseCode = StatusSuccess, StatusSuccess, 0
		download.ResponseStartDateTime, download.ResponseFinishDateTime = stamp(inv.started), stamp(inv.started)
		download.Output = "Content downloaded to /var/lib/amazon/ssm/" + inv.instanceID + "/document/orchestration/" + c.CommandId + "/downloadContent"
	}
	return []commandPluginJSON{download, script}
}

// pluginStatus maps the invocation status to the plugin status enum, which has no Delayed or
// Cancelling.
func (inv *invocation) pluginStatus() string {
	switch inv.status {
	case StatusCancelling:
		return StatusInProgress
	case StatusDelayed:
		return StatusPending
	}
	return inv.status
}

func (inv *invocation) outputURL(region, stream string) string {
	return fmt.Sprintf("https://s3.%s.amazonaws.com/%s/%s", region, inv.cmd.OutputS3BucketName, inv.outputKey(stream))
}

// outputKey is the S3 key the agent uploads one stream of the script step's output to:
//
//	<OutputS3KeyPrefix>/<command id>/<instance id>/<step action>/<step id>/stdout|stderr
//
// The agent joins the command's prefix, the command id and the instance id, then the step's
// action with its colon removed ("awsrunShellScript"), then the step's id: the "id" input where
// the document gives one (AWS-RunShellScript's "0.aws:runShellScript", colon removed again),
// else the step's name ("runShellScript" in AWS-RunRemoteScript).
func (inv *invocation) outputKey(stream string) string {
	c := inv.cmd
	step := "awsrunShellScript/0.awsrunShellScript"
	if c.DocumentName == RemoteScriptDocument {
		step = "awsrunShellScript/runShellScript"
	}
	return strings.TrimPrefix(path.Join(c.OutputS3KeyPrefix, c.CommandId, inv.instanceID, step, stream), "/")
}

// scriptPlugin names the step that runs the script in document doc.
func scriptPlugin(doc string) string {
	if doc == RemoteScriptDocument {
		return "runShellScript"
	}
	return "aws:runShellScript"
}

// pluginOutput joins stdout and stderr as the agent does and cuts the result at the service's
// limit, ending a cut output with TruncatedMarker.
func pluginOutput(stdout, stderr string) string {
	out := stdout
	if stderr != "" {
		out += ErrorSeparator + stderr
	}
	if len(out) <= PluginOutputLimit {
		return out
	}
	return out[:PluginOutputLimit-len(TruncatedMarker)] + TruncatedMarker
}

// spaced is how GetCommandInvocation spells the status details that ListCommandInvocations
// writes as one word.
func spaced(details string) string {
	switch details {
	case DetailsDeliveryTimedOut:
		return "Delivery Timed Out"
	case DetailsExecutionTimedOut:
		return "Execution Timed Out"
	case StatusInProgress:
		return "In Progress"
	}
	return details
}
