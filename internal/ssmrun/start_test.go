package ssmrun_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/awsretry"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// checkSent asserts that the server accepted exactly one command per batch of t, each with the
// right devices and comment, and that the log records exactly those commands.
func checkSent(t *testing.T, b *bundle, tk *task.Task) []ssmtest.Command {
	t.Helper()
	batches := ssmrun.Batches(tk.Request.DeviceIDs)
	cmds := b.srv.Commands()
	if len(cmds) != len(batches) {
		t.Fatalf("%d commands accepted, want %d", len(cmds), len(batches))
	}
	recorded, _ := b.log.Commands(t.Context(), tk.ID)
	if len(recorded) != len(batches) {
		t.Errorf("%d commands recorded, want %d: %v", len(recorded), len(batches), recorded)
	}
	for _, c := range cmds {
		n := slices.IndexFunc(batches, func(ids []string) bool { return slices.Equal(ids, c.InstanceIDs) })
		if n < 0 {
			t.Errorf("command %s targets %v, which is no batch", c.CommandID, c.InstanceIDs)
			continue
		}
		if c.Comment != ssmrun.Comment(tk.ID, n) {
			t.Errorf("batch %d comment %q", n, c.Comment)
		}
		if recorded[n] != c.CommandID {
			t.Errorf("batch %d recorded as %q, sent as %s", n, recorded[n], c.CommandID)
		}
	}
	return cmds
}

func TestStartSendsBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := b.runningTask("01JTASKBATCHES000000000000", devices(120))
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != 3 {
		t.Fatalf("SendCommand called %d times, want 3", n)
	}
	cmds := checkSent(t, b, tk)
	wantSizes := []int{50, 50, 20}
	for i, c := range cmds {
		if len(c.InstanceIDs) != wantSizes[i] || c.InstanceIDs[0] != device(i*50+1) {
			t.Errorf("command %d targets %d devices from %s", i, len(c.InstanceIDs), c.InstanceIDs[0])
		}
		want := map[string][]string{
			"sourceType":       {"S3"},
			"sourceInfo":       {`{"path":"https://fleet-scripts.s3.amazonaws.com/ops/patch.sh"}`},
			"commandLine":      {`patch.sh --dry-run 'it'\''s here' '$HOME'`},
			"executionTimeout": {"600"},
		}
		for k, v := range want {
			if !slices.Equal(c.Parameters[k], v) {
				t.Errorf("command %d parameter %s = %q, want %q", i, k, c.Parameters[k], v)
			}
		}
		if len(c.Parameters) != len(want) {
			t.Errorf("command %d has parameters %v", i, c.Parameters)
		}
		// maxConcurrency 10 over 3 batches; maxErrors passed through; delivery timeout until
		// the task's deadline.
		if c.DocumentName != ssmrun.DefaultDocument || c.MaxConcurrency != "3" || c.MaxErrors != "0" || c.TimeoutSeconds != 600 {
			t.Errorf("command %d: document %s concurrency %s errors %s timeout %d", i, c.DocumentName, c.MaxConcurrency, c.MaxErrors, c.TimeoutSeconds)
		}
		if c.OutputS3BucketName != "" {
			t.Errorf("command %d writes output to %q without an output bucket configured", i, c.OutputS3BucketName)
		}
	}

	// A redelivered dispatch sends nothing new.
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != 3 {
		t.Errorf("after a second Start SendCommand was called %d times, want 3", n)
	}
}

func TestStartPassesPercentagesAndOutput(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *ssmrun.Config) { c.OutputBucket = "fleet-output" })
	tk := b.runningTask("01JTASKPERCENT000000000000", devices(60))
	tk.Request.MaxConcurrency, tk.Request.MaxErrors = "25%", "10%"
	b.clock.Advance(590 * time.Second) // 10 s before the deadline: the delivery timeout floor applies
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start: %v", err)
	}
	for _, c := range checkSent(t, b, tk) {
		if c.MaxConcurrency != "25%" || c.MaxErrors != "10%" || c.TimeoutSeconds != 30 {
			t.Errorf("concurrency %s errors %s delivery timeout %d", c.MaxConcurrency, c.MaxErrors, c.TimeoutSeconds)
		}
		if c.OutputS3BucketName != "fleet-output" || c.OutputS3KeyPrefix != "fleetrun/"+tk.ID {
			t.Errorf("output to %s/%s", c.OutputS3BucketName, c.OutputS3KeyPrefix)
		}
	}
}

func TestStartRecoversCommandAcceptedBeforeACrash(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := b.runningTask("01JTASKRECOVER000000000000", devices(120))
	// The second SendCommand is accepted, but its answer is lost: the SDK must not send it
	// again, and the runner cannot record it.
	b.srv.PassNext(ssmtest.OpSendCommand, 1)
	b.srv.FailAfterAccept(ssmtest.OpSendCommand, 1)
	err := b.runner.Start(t.Context(), tk)
	if err == nil || errors.Is(err, engine.ErrIncomplete) || task.IsCode(err, task.CodeInvalid) {
		t.Fatalf("Start after a lost answer: %v, want a retryable error", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != 2 {
		t.Fatalf("SendCommand called %d times, want 2 (the 500 must not be retried)", n)
	}
	if rec, _ := b.log.Commands(t.Context(), tk.ID); len(rec) != 1 {
		t.Fatalf("%d commands recorded before the retry, want 1", len(rec))
	}

	// The executor retries the message.
	b.clock.Advance(30 * time.Second)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("retried Start: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != 3 {
		t.Errorf("SendCommand called %d times in all, want 3", n)
	}
	checkSent(t, b, tk)
}

func TestStartStopsNearTheDeadlineAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The runner's clock moves a minute with every SendCommand, as if each took that long.
	base := time.Now()
	runner := ssmrun.New(ssmrun.Config{API: b.srv.Client(), CommandLog: b.log, AllowedBuckets: []string{"fleet-scripts"},
		Now: func() time.Time { return base.Add(time.Duration(b.srv.Calls(ssmtest.OpSendCommand)) * time.Minute) }})
	b.srv.SetNow(time.Now)
	tk := b.runningTask("01JTASKDEADLINE00000000000", devices(120))
	tk.StartedAt, tk.CreatedAt = &base, base

	ctx, cancel := context.WithDeadline(t.Context(), base.Add(2*time.Minute+5*time.Second))
	defer cancel()
	err := runner.Start(ctx, tk)
	if !errors.Is(err, engine.ErrIncomplete) {
		t.Fatalf("Start near the deadline: %v, want ErrIncomplete", err)
	}
	if rec, _ := b.log.Commands(t.Context(), tk.ID); len(rec) != 2 || len(b.srv.Commands()) != 2 {
		t.Fatalf("before pausing: %d recorded, %d sent, want 2 and 2", len(rec), len(b.srv.Commands()))
	}

	if err := runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("resumed Start: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != 3 {
		t.Errorf("SendCommand called %d times in all, want 3", n)
	}
	checkSent(t, b, tk)
}

func TestStartMakesProgressEvenInsideTheMargin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := b.runningTask("01JTASKSHORTTIMEOUT0000000", devices(120))
	// A function whose whole timeout is shorter than the margin: every Start must still send
	// a batch, or the dispatch would be handed on forever without sending anything.
	for want := 1; want <= 3; want++ {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := b.runner.Start(ctx, tk)
		cancel()
		if want < 3 && !errors.Is(err, engine.ErrIncomplete) {
			t.Fatalf("Start %d: %v, want ErrIncomplete", want, err)
		}
		if want == 3 && err != nil {
			t.Fatalf("Start %d: %v, want done", want, err)
		}
		if n := len(b.srv.Commands()); n != want {
			t.Fatalf("after Start %d: %d commands sent, want %d", want, n, want)
		}
	}
	checkSent(t, b, tk)
}

func TestStartSurvivesThrottling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := b.runningTask("01JTASKTHROTTLE00000000000", devices(70))
	b.srv.ThrottleNext(ssmtest.OpSendCommand, 2)
	b.srv.ThrottleNext(ssmtest.OpListCommands, 2)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start under throttling: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != 4 {
		t.Errorf("SendCommand called %d times, want 4 (2 throttled and retried)", n)
	}
	checkSent(t, b, tk)

	// Throttling that outlasts the SDK's attempts surfaces as unavailable, and the next
	// dispatch carries on without duplicates.
	tk2 := b.runningTask("01JTASKTHROTTLE20000000000", devices(10))
	b.srv.ThrottleNext(ssmtest.OpSendCommand, awsretry.DefaultMaxAttempts)
	err := b.runner.Start(t.Context(), tk2)
	if !task.IsCode(err, task.CodeUnavailable) {
		t.Fatalf("Start under lasting throttling: %v, want CodeUnavailable", err)
	}
	if err := b.runner.Start(t.Context(), tk2); err != nil {
		t.Fatalf("Start once throttling ended: %v", err)
	}
	var mine int
	for _, c := range b.srv.Commands() {
		if strings.Contains(c.Comment, tk2.ID) {
			mine++
		}
	}
	if mine != 1 {
		t.Errorf("%d commands for the second task, want 1", mine)
	}
}

func TestStartRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// A script outside the allowed buckets never reaches SSM.
	tk := b.runningTask("01JTASKBADSCRIPT0000000000", devices(3))
	tk.Request.ScriptURL = "s3://elsewhere/patch.sh"
	if err := b.runner.Start(t.Context(), tk); !task.IsCode(err, task.CodeInvalid) {
		t.Errorf("Start with a script in another bucket: %v, want CodeInvalid", err)
	}

	// SSM refusing the first batch for a reason of its own fails the task.
	tk = b.runningTask("01JTASKDENIED0000000000000", devices(3))
	b.srv.FailNext(ssmtest.OpSendCommand, http.StatusBadRequest, "AccessDeniedException", "not authorized to perform ssm:SendCommand", 1)
	err := b.runner.Start(t.Context(), tk)
	if !task.IsCode(err, task.CodeInvalid) || !strings.Contains(err.Error(), "AccessDeniedException") {
		t.Errorf("Start refused by SSM: %v, want CodeInvalid naming the refusal", err)
	}
	if n := len(b.srv.Commands()); n != 0 {
		t.Errorf("%d commands accepted", n)
	}

	// An unknown node makes SSM refuse its batch only; the other batches run.
	tk = b.runningTask("01JTASKINVALIDID0000000000", devices(60))
	b.srv.Script(device(55), ssmtest.Script{Outcome: ssmtest.Invalid})
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start with an invalid node in batch 1: %v", err)
	}
	if cmds := b.srv.Commands(); len(cmds) != 1 || len(cmds[0].InstanceIDs) != 50 {
		t.Fatalf("accepted %d commands, want batch 0 only", len(cmds))
	}
	calls := b.srv.Calls(ssmtest.OpSendCommand)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != calls {
		t.Errorf("a refused batch was sent again")
	}
	b.srv.Settle()
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	got := map[task.DeviceStatus]int{}
	for _, u := range updates {
		got[u.Status]++
		if u.Status == task.DeviceUndeliverable && !strings.Contains(u.Reason, device(55)) {
			t.Errorf("undeliverable reason %q does not name the node SSM refused", u.Reason)
		}
	}
	if got[task.DeviceSucceeded] != 50 || got[task.DeviceUndeliverable] != 10 {
		t.Errorf("updates by status: %v, want 50 succeeded and 10 undeliverable", got)
	}
}
