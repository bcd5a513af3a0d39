// Package ssmrun runs fleetrun tasks with SSM Run Command. It implements engine.Runner and
// engine.PolledRunner on top of the aws-sdk-go-v2 SSM client.
//
// Dispatch. A task's devices are sent in batches of at most BatchSize instance ids, batch n
// being DeviceIDs[n*BatchSize:(n+1)*BatchSize], one SendCommand each, with the Comment
// "fleetrun task <id> batch <n>". SendCommand has no idempotency token, so a dispatch that is
// retried (a redelivered message, a crash after SSM accepted a command but before it was
// recorded) first finds the commands already sent: those in the CommandLog, then those that
// ListCommands shows with the task's comment since the task started, recording any it finds.
// A batch is never sent twice by a retried dispatch; should two dispatches of one task run at
// the same instant, the loser of RecordCommand cancels its own command.
//
// SendCommand is retried by the SDK only for throttling, which means SSM did not accept the
// request; any other failure that might have followed an acceptance (a 5xx, a lost
// connection) is returned instead, and the next dispatch finds the command if it was accepted.
// A refusal (4xx) of the first batch fails the task with task.CodeInvalid; a refusal of a later
// batch is recorded for that batch, and Poll reports its devices undeliverable with SSM's
// message. InvalidInstanceId is different: SSM refuses a whole batch for one id it does not
// know, so the batch is split until each such id stands alone (see isolate), and only those
// ids are undeliverable.
//
// Each command is sent with the task's delivery timeout (Request.DeliveryTimeoutSeconds) as
// SSM's TimeoutSeconds, so a node that is switched off ends DeliveryTimedOut, undeliverable,
// instead of holding its task until the deadline; and, when Config.OutputBucket is set, with
// that bucket and the task's OutputPrefix, where the nodes write every device's full output
// (OutputKey).
//
// Concurrency. SSM applies MaxConcurrency and MaxErrors per command, that is per batch. A
// percentage means the same in every batch and is passed through. A count of concurrent
// devices is divided among the batches (at least one each), so the fleet runs at most
// max(count, batches) devices at once instead of count per batch. A count of errors is passed
// through: each batch stops after that many errors of its own, and the engine still fails the
// task at the end when the whole fleet exceeded maxErrors.
//
// Progress. Poll lists every recorded command's invocations with their output. The output in
// ListCommandInvocations is SSM's plugin output: stdout and stderr together, cut at 2,500
// characters; Invocation reads one device's 24,000/8,000 characters through
// GetCommandInvocation, for the function that handles SSM's EventBridge events.
package ssmrun

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/task"
)

// BatchSize is the most instance ids SendCommand takes.
const BatchSize = 50

// DefaultDocument is the AWS-managed document that downloads a script from S3 and runs it.
const DefaultDocument = "AWS-RunRemoteScript"

// API is the part of *ssm.Client the runner uses.
type API interface {
	SendCommand(ctx context.Context, in *ssm.SendCommandInput, optFns ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	ListCommands(ctx context.Context, in *ssm.ListCommandsInput, optFns ...func(*ssm.Options)) (*ssm.ListCommandsOutput, error)
	ListCommandInvocations(ctx context.Context, in *ssm.ListCommandInvocationsInput, optFns ...func(*ssm.Options)) (*ssm.ListCommandInvocationsOutput, error)
	GetCommandInvocation(ctx context.Context, in *ssm.GetCommandInvocationInput, optFns ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error)
	CancelCommand(ctx context.Context, in *ssm.CancelCommandInput, optFns ...func(*ssm.Options)) (*ssm.CancelCommandOutput, error)
}

// CommandLog records which SSM command was sent for which batch of which task. The DynamoDB
// store implements it; MemoryLog is an in-memory one.
type CommandLog interface {
	// RecordCommand records commandID as batch's command. Recording the same command again is
	// not an error; recording another command for a batch that has one returns an error with
	// code task.CodeConflict and changes nothing.
	RecordCommand(ctx context.Context, taskID string, batch int, commandID string) error
	// Commands returns the task's recorded commands by batch, empty when there are none.
	Commands(ctx context.Context, taskID string) (map[int]string, error)
	// TaskForCommand returns the task a command was sent for, or an CodeNotFound error.
	TaskForCommand(ctx context.Context, commandID string) (string, error)
}

// Config wires a Runner. API and CommandLog are required.
type Config struct {
	API        API
	CommandLog CommandLog
	// DocumentName is the document to run, DefaultDocument when empty. Another document must
	// take the same parameters (sourceType, sourceInfo, commandLine, executionTimeout).
	DocumentName string
	// PluginName is the name of the document step that runs the script, whose output and exit
	// code a device reports; "runShellScript" for DefaultDocument. The step must be an
	// aws:runShellScript step for OutputKey to find its output.
	PluginName string
	// AllowedBuckets are the buckets scripts may come from; Start checks a task against them
	// again, so a task stored under an older configuration cannot run an unapproved script.
	AllowedBuckets []string
	// OutputBucket, when set, is where SSM writes every device's full output (OutputKey).
	OutputBucket string
	// OutputLogGroup, when set, is the CloudWatch Logs group SSM sends every device's output
	// to while it runs (CloudWatchOutputConfig), where a followed output is read.
	OutputLogGroup string
	// Devices, when set, lets Start leave out the devices that callers cancelled one by one
	// before their batch was sent (see StopDevices); without it they are sent and then
	// cancelled.
	Devices Devices
	Now     func() time.Time
	Logger  *slog.Logger
	// Margin stops a dispatch when its context's deadline is closer than this (default 10 s),
	// so that a Lambda records what it sent before it is stopped.
	Margin time.Duration
}

// Runner runs tasks with SSM Run Command. It is safe for concurrent use.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	check func(string) error
}

var (
	_ engine.Runner       = (*Runner)(nil)
	_ engine.PolledRunner = (*Runner)(nil)
)

// New returns a Runner for cfg, filling in defaults.
func New(cfg Config) *Runner {
	if cfg.DocumentName == "" {
		cfg.DocumentName = DefaultDocument
	}
	if cfg.PluginName == "" && cfg.DocumentName == DefaultDocument {
		cfg.PluginName = ssmcmd.DefaultStep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Margin <= 0 {
		cfg.Margin = 10 * time.Second
	}
	return &Runner{cfg: cfg, log: cfg.Logger, check: ssmcmd.CheckScript(cfg.AllowedBuckets)}
}

// Batches splits a task's devices into the batches Start sends, in order.
func Batches(deviceIDs []string) [][]string {
	var out [][]string
	for ids := range slices.Chunk(deviceIDs, BatchSize) {
		out = append(out, ids)
	}
	return out
}

// Comment is the comment of batch n's command, which is how a retried dispatch finds it.
func Comment(taskID string, n int) string {
	return fmt.Sprintf("fleetrun task %s batch %d", taskID, n)
}

// partComment is the comment of the seq'th part of batch n sent while isolating unknown ids.
func partComment(taskID string, n, seq int) string {
	return fmt.Sprintf("fleetrun task %s batch %d part %d", taskID, n, seq)
}

// parseComment returns the slot of a command sent for taskID (see slot).
func parseComment(comment, taskID string) (int, bool) {
	rest, ok := strings.CutPrefix(comment, "fleetrun task "+taskID+" batch ")
	if !ok {
		return 0, false
	}
	batch, part, split := strings.Cut(rest, " part ")
	n, ok := number(batch)
	if !ok || !split {
		return n, ok
	}
	seq, ok := number(part)
	if !ok || seq < 1 || seq >= partsPerBatch {
		return 0, false
	}
	return partSlot(n, seq), true
}

// number parses a non-negative decimal written without sign or leading zeros.
func number(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && strconv.Itoa(n) == s
}

// OutputKey is the S3 key in Config.OutputBucket of one stream ("stdout" or "stderr") of the
// output of device instanceID, run by command commandID of task taskID (see ssmcmd.OutputKey).
func (r *Runner) OutputKey(taskID, commandID, instanceID, stream string) string {
	return ssmcmd.OutputKey(r.cfg.PluginName)(taskID, commandID, instanceID, stream)
}

// Start sends every batch of t that has no command yet, without the devices that callers
// cancelled one by one before it was sent (a batch left with none is not sent at all). It returns engine.ErrIncomplete when
// its context's deadline came within Margin; the next Start continues. Each Start sends at
// least one batch before it looks at the deadline, so a function whose timeout is shorter than
// Margin still makes progress instead of handing the same dispatch on forever.
func (r *Runner) Start(ctx context.Context, t *task.Task) (err error) {
	if err := r.check(t.Request.ScriptURL); err != nil {
		return &task.Error{Code: task.CodeInvalid, Message: "scriptUrl: " + err.Error()}
	}
	obj, _ := ssmcmd.ParseScriptURL(t.Request.ScriptURL)
	batches := Batches(t.Request.DeviceIDs)
	sent, err := r.sent(ctx, t, len(batches))
	if err != nil {
		return err
	}
	done, sentNow := 0, 0
	for n := range batches {
		if _, ok := sent[n]; ok {
			done++
		}
	}
	skip, err := r.cancelledDevices(ctx, t)
	if err != nil {
		return err
	}
	defer func() {
		if sentNow > 0 && err == nil {
			err = r.stopLateCancels(ctx, t, skip)
		}
	}()
	for n, ids := range batches {
		if _, ok := sent[n]; ok {
			continue
		}
		if len(skip) > 0 {
			ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return skip[id] })
			if len(ids) == 0 {
				continue // every device of the batch was cancelled: nothing to send
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ssmrun: dispatch %s: %w", t.ID, err)
		}
		if deadline, ok := ctx.Deadline(); ok && sentNow > 0 && deadline.Sub(r.cfg.Now()) < r.cfg.Margin {
			r.log.InfoContext(ctx, "dispatch paused near the deadline", "task_id", t.ID, "batches_sent", done, "batches", len(batches))
			return fmt.Errorf("ssmrun: dispatch %s: %d of %d batches sent: %w", t.ID, done, len(batches), engine.ErrIncomplete)
		}
		if err := r.send(ctx, t, obj, n, ids, len(batches), done == 0, sent); err != nil {
			return err
		}
		done++
		sentNow++
	}
	return nil
}

// sent returns the commands already sent for t, by batch. Those that SSM has but the log
// lacks (a crash between SendCommand and RecordCommand) are recorded first.
func (r *Runner) sent(ctx context.Context, t *task.Task, batches int) (map[int]string, error) {
	recorded, err := r.cfg.CommandLog.Commands(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("ssmrun: commands of %s: %w", t.ID, err)
	}
	recorded = maps.Clone(recorded)
	if recorded == nil {
		recorded = map[int]string{}
	}
	whole := 0
	for slot := range recorded {
		if slot < batches {
			whole++
		}
	}
	if whole >= batches {
		return recorded, nil
	}
	found, err := r.findSent(ctx, t, batches)
	if err != nil {
		return nil, err
	}
	for _, c := range found {
		if have, ok := recorded[c.batch]; ok {
			if have != c.id {
				r.dropDuplicate(ctx, t, c.batch, c.id, have)
			}
			continue
		}
		if err := r.cfg.CommandLog.RecordCommand(ctx, t.ID, c.batch, c.id); err != nil {
			return nil, fmt.Errorf("ssmrun: record recovered command %s of %s batch %d: %w", c.id, t.ID, c.batch, err)
		}
		r.log.InfoContext(ctx, "recovered a command sent before a failure", "task_id", t.ID, "batch", c.batch, "command_id", c.id)
		recorded[c.batch] = c.id
	}
	return recorded, nil
}

// sentCommand is a command found with ListCommands; batch is its slot.
type sentCommand struct {
	batch int
	id    string
	at    time.Time
}

// findSent lists the commands of t's document sent since a minute before it started and keeps
// those whose comment names t, oldest first.
func (r *Runner) findSent(ctx context.Context, t *task.Task, batches int) ([]sentCommand, error) {
	since := t.CreatedAt
	if t.StartedAt != nil {
		since = *t.StartedAt
	}
	since = since.Add(-time.Minute).UTC()
	p := ssm.NewListCommandsPaginator(r.cfg.API, &ssm.ListCommandsInput{
		MaxResults: aws.Int32(50),
		Filters: []types.CommandFilter{
			{Key: types.CommandFilterKeyInvokedAfter, Value: aws.String(since.Format(time.RFC3339))},
			{Key: types.CommandFilterKeyDocumentName, Value: aws.String(r.cfg.DocumentName)},
		},
	})
	var found []sentCommand
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ssmrun: list commands of %s: %w", t.ID, err)
		}
		for _, c := range page.Commands {
			slot, ok := parseComment(aws.ToString(c.Comment), t.ID)
			if n, _ := slotBatch(slot); !ok || n >= batches {
				continue
			}
			found = append(found, sentCommand{batch: slot, id: aws.ToString(c.CommandId), at: aws.ToTime(c.RequestedDateTime)})
		}
	}
	slices.SortStableFunc(found, func(a, b sentCommand) int { return a.at.Compare(b.at) })
	return found, nil
}

// dropDuplicate cancels a second command found for a batch that already has one. It can only
// come from two dispatches of one task running at once; the recorded command stays.
func (r *Runner) dropDuplicate(ctx context.Context, t *task.Task, batch int, dup, kept string) {
	r.log.WarnContext(ctx, "cancelling a duplicate command", "task_id", t.ID, "batch", batch, "command_id", dup, "kept_command_id", kept)
	if _, err := r.cfg.API.CancelCommand(ctx, &ssm.CancelCommandInput{CommandId: aws.String(dup)}); err != nil {
		r.log.WarnContext(ctx, "cancelling a duplicate command failed", "task_id", t.ID, "command_id", dup, "err", err)
	}
}
