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
	tk.Request.DeliveryTimeoutSeconds = 10 // below SSM's least: its floor of 30 s applies
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

	// An unknown node makes SSM refuse its batch; the batch is split until the node stands
	// alone, and every other device runs.
	tk = b.runningTask("01JTASKINVALIDID0000000000", devices(60))
	b.srv.Script(device(55), ssmtest.Script{Outcome: ssmtest.Invalid})
	before := b.srv.Calls(ssmtest.OpSendCommand)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start with an invalid node in batch 1: %v", err)
	}
	sentTo := map[string]int{}
	for _, c := range b.srv.Commands() {
		for _, id := range c.InstanceIDs {
			sentTo[id]++
		}
	}
	if len(sentTo) != 59 || sentTo[device(55)] != 0 {
		t.Errorf("SSM took commands for %d devices (the unknown one %d times), want the 59 others", len(sentTo), sentTo[device(55)])
	}
	calls := b.srv.Calls(ssmtest.OpSendCommand)
	// Batch 0 once; batch 1 of 10 ids with one unknown within MaxSendCommands.
	if limit := 1 + ssmrun.MaxSendCommands(10, 1); calls-before > limit {
		t.Errorf("%d SendCommands, want at most %d", calls-before, limit)
	}
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpSendCommand); n != calls {
		t.Errorf("a second Start sent %d more commands", n-calls)
	}
	b.srv.Settle()
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	got := map[task.DeviceStatus]int{}
	for _, u := range updates {
		got[u.Status]++
		if u.Status == task.DeviceUndeliverable && (u.DeviceID != device(55) || !strings.Contains(u.Reason, "SSM does not know this managed node")) {
			t.Errorf("undeliverable %s: %q, want only %s, as unknown to SSM", u.DeviceID, u.Reason, device(55))
		}
	}
	if got[task.DeviceSucceeded] != 59 || got[task.DeviceUndeliverable] != 1 {
		t.Errorf("updates by status: %v, want 59 succeeded and 1 undeliverable", got)
	}
}

// TestStartIsolatesUnknownIDsAcrossACrash sends a batch of 50 with two ids SSM does not know,
// where the answer to one part that SSM took is lost (a 500 after the command was accepted):
// the dispatch fails, the next one finds that part by its comment and carries on without
// sending it again, and in the end each of the 48 known devices was sent exactly once, within
// the bound MaxSendCommands states.
func TestStartIsolatesUnknownIDsAcrossACrash(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := devices(50)
	unknown := []string{ids[7], ids[31]}
	for _, id := range unknown {
		b.srv.Script(id, ssmtest.Script{Outcome: ssmtest.Invalid})
	}
	tk := b.runningTask("01JTASKISOLATE000000000000", ids)
	// The whole batch, its first half and that half's first half all hold ids[7] and are
	// refused; the fourth call, ids[0:6], is taken, and its answer lost.
	b.srv.PassNext(ssmtest.OpSendCommand, 3)
	b.srv.FailAfterAccept(ssmtest.OpSendCommand, 1)
	if err := b.runner.Start(t.Context(), tk); err == nil || task.IsCode(err, task.CodeInvalid) {
		t.Fatalf("Start with a lost answer: %v, want an error to retry", err)
	}
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	sentTo := map[string]int{}
	for _, c := range b.srv.Commands() {
		if !strings.HasPrefix(c.Comment, "fleetrun task "+tk.ID+" batch 0") {
			t.Errorf("command comment %q", c.Comment)
		}
		for _, id := range c.InstanceIDs {
			sentTo[id]++
		}
	}
	for _, id := range ids {
		want := 1
		if slices.Contains(unknown, id) {
			want = 0
		}
		if sentTo[id] != want {
			t.Errorf("%s was sent %d times, want %d", id, sentTo[id], want)
		}
	}
	// The replay repeats the refused calls before the lost one, and not the part SSM took.
	calls := b.srv.Calls(ssmtest.OpSendCommand)
	t.Logf("50 ids, 2 unknown: %d SendCommands over two dispatches, %d commands taken", calls, len(b.srv.Commands()))
	if limit := ssmrun.MaxSendCommands(50, 2) + 3; calls > limit {
		t.Errorf("%d SendCommands, want at most %d (the bound, and the 3 refused calls the retry repeats)", calls, limit)
	}
	b.srv.Settle()
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatal(err)
	}
	got := map[task.DeviceStatus][]string{}
	for _, u := range updates {
		got[u.Status] = append(got[u.Status], u.DeviceID)
	}
	slices.Sort(got[task.DeviceUndeliverable])
	if len(got[task.DeviceSucceeded]) != 48 || !slices.Equal(got[task.DeviceUndeliverable], unknown) {
		t.Errorf("succeeded %d, undeliverable %v; want 48 and %v", len(got[task.DeviceSucceeded]), got[task.DeviceUndeliverable], unknown)
	}
}

func TestMaxSendCommands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ k, b, want int }{
		{50, 0, 1}, {50, 1, 8}, {50, 2, 15}, {1, 1, 2}, {2, 1, 3}, {10, 1, 6}, {64, 1, 8}, {65, 1, 9},
	} {
		if got := ssmrun.MaxSendCommands(tc.k, tc.b); got != tc.want {
			t.Errorf("MaxSendCommands(%d, %d) = %d, want %d", tc.k, tc.b, got, tc.want)
		}
	}
}

// TestStartPassesTheDeliveryTimeout checks that SSM's delivery timeout is the task's own, not
// its remaining deadline, so that an offline node ends undeliverable long before the deadline.
func TestStartPassesTheDeliveryTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id             string
		timeout, given int
		want           int
	}{
		{"01JTASKDELIVERY60000000000", 3600, 60, 60},
		{"01JTASKDELIVERYTASK0000000", 3600, 3600, 3600},
		// A task stored before the field existed gets the default, or its timeout if shorter.
		{"01JTASKDELIVERYOLD0000000A", 3600, 0, 600},
		{"01JTASKDELIVERYOLD0000000B", 120, 0, 120},
	} {
		b := setup(t)
		tk := b.runningTask(tc.id, devices(2))
		tk.Request.TimeoutSeconds, tk.Request.DeliveryTimeoutSeconds = tc.timeout, tc.given
		if err := b.runner.Start(t.Context(), tk); err != nil {
			t.Fatal(err)
		}
		if cmds := checkSent(t, b, tk); len(cmds) != 1 || cmds[0].TimeoutSeconds != tc.want {
			t.Errorf("timeout %d, delivery timeout %d: SSM got %+v, want TimeoutSeconds %d", tc.timeout, tc.given, cmds, tc.want)
		}
	}
}

func TestOutputKey(t *testing.T) {
	t.Parallel()
	r := ssmrun.New(ssmrun.Config{})
	want := "fleetrun/T1/cmd-1/i-0123456789abcdef0/awsrunShellScript/runShellScript/stderr"
	if got := r.OutputKey("T1", "cmd-1", "i-0123456789abcdef0", "stderr"); got != want {
		t.Errorf("OutputKey = %s, want %s", got, want)
	}
	if got := ssmrun.OutputPrefix("T1"); got != "fleetrun/T1" {
		t.Errorf("OutputPrefix = %s", got)
	}
}
