package ssmrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Delivery timeout bounds of SendCommand's TimeoutSeconds.
const (
	minDeliveryTimeout = 30
	maxDeliveryTimeout = 2592000
)

// send sends batch n of t and records the outcome in the log and in recorded, by slot. first
// is true when no batch of t has been sent yet, so that a refusal can still fail the whole
// task cleanly. A batch that SSM refuses for an instance id it does not know is isolated.
func (r *Runner) send(ctx context.Context, t *task.Task, obj ssmcmd.S3Object, n int, ids []string, batches int, first bool, recorded map[int]string) error {
	id, err := r.sendPart(ctx, t, obj, n, 0, ids, batches, recorded)
	if unknownInstance(err) {
		return r.isolate(ctx, t, obj, n, ids, batches, recorded)
	}
	if err != nil {
		marker, rerr := r.refused(ctx, t, n, first, err)
		if rerr != nil {
			return rerr
		}
		recorded[n] = marker
		return nil
	}
	r.log.InfoContext(ctx, "batch sent", "task_id", t.ID, "batch", n, "command_id", id, "devices", len(ids))
	return nil
}

// sendPart sends ids, part seq of batch n (seq 0 is the whole batch), and records its command
// under the part's slot. A part already recorded is not sent again. SSM's refusal is returned
// as it came.
func (r *Runner) sendPart(ctx context.Context, t *task.Task, obj ssmcmd.S3Object, n, seq int, ids []string, batches int, recorded map[int]string) (string, error) {
	slot, comment := n, Comment(t.ID, n)
	if seq > 0 {
		slot, comment = partSlot(n, seq), partComment(t.ID, n, seq)
	}
	if id, ok := recorded[slot]; ok {
		return id, nil
	}
	in := r.input(t, obj, ids, batches, comment)
	out, err := r.cfg.API.SendCommand(ctx, in, retryThrottlesOnly)
	if err != nil {
		return "", err
	}
	id := aws.ToString(out.Command.CommandId)
	// The command runs now whatever happens to this context, so it is recorded even if the
	// context ends; if recording fails anyway, the next dispatch finds it with ListCommands.
	err = r.cfg.CommandLog.RecordCommand(context.WithoutCancel(ctx), t.ID, slot, id)
	if task.IsCode(err, task.CodeConflict) {
		kept, _ := r.cfg.CommandLog.Commands(context.WithoutCancel(ctx), t.ID)
		r.dropDuplicate(ctx, t, slot, id, kept[slot])
		id = kept[slot]
	} else if err != nil {
		return "", fmt.Errorf("ssmrun: record command %s of %s batch %d: %w", id, t.ID, n, err)
	}
	recorded[slot] = id
	return id, nil
}

// input builds the SendCommand of ids, one batch or a part of one, with comment.
func (r *Runner) input(t *task.Task, obj ssmcmd.S3Object, ids []string, batches int, comment string) *ssm.SendCommandInput {
	timeout := t.Request.TimeoutSeconds
	if timeout <= 0 {
		timeout = task.DefaultTimeout
	}
	var info bytes.Buffer
	enc := json.NewEncoder(&info)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Path string `json:"path"`
	}{obj.HTTPSURL()})
	in := &ssm.SendCommandInput{
		DocumentName: aws.String(r.cfg.DocumentName),
		InstanceIds:  ids,
		Comment:      aws.String(comment),
		Parameters: map[string][]string{
			"sourceType":       {"S3"},
			"sourceInfo":       {strings.TrimSpace(info.String())},
			"commandLine":      {ssmcmd.CommandLine(obj.FileName(), t.Request.Args)},
			"executionTimeout": {strconv.Itoa(timeout)},
		},
		MaxConcurrency: aws.String(batchConcurrency(t.Request.MaxConcurrency, batches)),
		MaxErrors:      aws.String(orDefault(t.Request.MaxErrors, task.DefaultMaxErrors)),
		TimeoutSeconds: aws.Int32(deliveryTimeout(t.Request)),
	}
	if r.cfg.OutputLogGroup != "" {
		in.CloudWatchOutputConfig = &types.CloudWatchOutputConfig{CloudWatchOutputEnabled: true,
			CloudWatchLogGroupName: aws.String(r.cfg.OutputLogGroup)}
	}
	if r.cfg.OutputBucket != "" {
		in.OutputS3BucketName = aws.String(r.cfg.OutputBucket)
		in.OutputS3KeyPrefix = aws.String(ssmcmd.OutputPrefix(t.ID))
	}
	return in
}

// deliveryTimeout is how long SSM may wait for a device to pick the command up: the task's
// deliveryTimeoutSeconds, within SSM's bounds. A task stored before that field existed gets
// the default.
func deliveryTimeout(req task.Request) int32 {
	d := req.DeliveryTimeoutSeconds
	if d <= 0 {
		d = min(task.DefaultDeliveryTimeout, max(req.TimeoutSeconds, 1))
	}
	return int32(min(max(d, minDeliveryTimeout), maxDeliveryTimeout))
}

// batchConcurrency is the MaxConcurrency of each of a task's batches (see the package doc).
func batchConcurrency(spec string, batches int) string {
	spec = orDefault(spec, task.DefaultConcurrency)
	if strings.HasSuffix(spec, "%") {
		return spec
	}
	count, err := strconv.Atoi(spec)
	if err != nil || count < 1 {
		return spec
	}
	return strconv.Itoa(max(1, count/max(batches, 1)))
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// refused turns a failed SendCommand of batch n into what Start returns. Throttling that
// outlasted the SDK's retries, 5xx answers and network failures are returned for the message
// to be retried later; a 4xx refusal fails the task (first batch) or is recorded for its
// batch, and its marker returned.
func (r *Runner) refused(ctx context.Context, t *task.Task, n int, first bool, err error) (string, error) {
	msg, ok := refusalMessage(err)
	if !ok {
		return "", r.sendError(t, n, err)
	}
	if first {
		return "", fmt.Errorf("ssmrun: send %s batch %d: %w", t.ID, n, task.Errorf(task.CodeInvalid, "SSM refused the command: %s", msg))
	}
	marker := refusedMarker(t.ID, n, msg)
	if err := r.cfg.CommandLog.RecordCommand(context.WithoutCancel(ctx), t.ID, n, marker); err != nil {
		return "", fmt.Errorf("ssmrun: record refusal of %s batch %d: %w", t.ID, n, err)
	}
	r.log.WarnContext(ctx, "SSM refused a batch; its devices are undeliverable", "task_id", t.ID, "batch", n, "err", msg)
	return marker, nil
}

// sendError wraps a SendCommand failure that may pass, for the dispatch to be retried.
func (r *Runner) sendError(t *task.Task, n int, err error) error {
	if throttled(err) {
		return fmt.Errorf("ssmrun: send %s batch %d: %w: %w", t.ID, n,
			task.Errorf(task.CodeUnavailable, "SSM is throttling SendCommand; the dispatch resumes later"), err)
	}
	return fmt.Errorf("ssmrun: send %s batch %d: %w", t.ID, n, err)
}

// refusalMessage returns SSM's code and message when err is a refusal (a 4xx other than
// throttling), which sending the same request again cannot change.
func refusalMessage(err error) (string, bool) {
	var api smithy.APIError
	var resp *awshttp.ResponseError
	if throttled(err) || !errors.As(err, &api) || !errors.As(err, &resp) || resp.HTTPStatusCode() < 400 || resp.HTTPStatusCode() >= 500 {
		return "", false
	}
	msg := api.ErrorCode()
	if m := api.ErrorMessage(); m != "" {
		msg += ": " + m
	}
	return msg, true
}

// unknownInstance reports whether SSM refused a SendCommand because one of its instance ids is
// not a managed node it can send to.
func unknownInstance(err error) bool {
	var api smithy.APIError
	_, refusal := refusalMessage(err)
	return refusal && errors.As(err, &api) && api.ErrorCode() == "InvalidInstanceId"
}

// A refused batch is recorded in the CommandLog under a marker instead of a command id, so that
// Poll reports its devices and a retried dispatch does not send it again. The marker holds the
// task and batch, which keeps it unique, and SSM's message, which Poll shows as the reason.
const refusedPrefix = "refused/"

func refusedMarker(taskID string, n int, msg string) string {
	return fmt.Sprintf("%s%s/%d/%s", refusedPrefix, taskID, n, msg)
}

// refusal returns the SSM message of a refused-batch marker.
func refusal(commandID string) (string, bool) {
	rest, ok := strings.CutPrefix(commandID, refusedPrefix)
	if !ok {
		return "", false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 {
		return rest, true
	}
	return parts[2], true
}

// throttled reports whether err is SSM throttling the caller.
func throttled(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool()
}

// retryThrottlesOnly makes the SDK retry a SendCommand only when SSM throttled it. A throttled
// request was refused, so sending it again cannot run the script twice; after any other
// failure SSM may have accepted the command, and only ListCommands can tell.
func retryThrottlesOnly(o *ssm.Options) {
	if o.Retryer == nil {
		return
	}
	v2, ok := o.Retryer.(aws.RetryerV2)
	if !ok {
		v2 = retryerV2{o.Retryer}
	}
	o.Retryer = throttleRetryer{v2}
}

type throttleRetryer struct{ aws.RetryerV2 }

func (r throttleRetryer) IsErrorRetryable(err error) bool {
	return throttled(err) && r.RetryerV2.IsErrorRetryable(err)
}

// retryerV2 adapts a retryer that predates aws.RetryerV2.
type retryerV2 struct{ aws.Retryer }

func (r retryerV2) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}
