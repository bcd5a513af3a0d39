package ssmrun_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestPollMapsOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *ssmrun.Config) { c.OutputBucket = "fleet-output" })
	long := strings.Repeat("o", 3000)
	type want struct {
		status             task.DeviceStatus
		exit               int // -1: no exit code
		stdout, stderr     string
		stdoutCut, errCut  bool
		reason             string // substring
		runningAfterFirst  bool   // reported running by the first poll
		reportedAfterFirst bool
	}
	cases := []struct {
		name   string
		script ssmtest.Script
		want   want
	}{
		{"success", ssmtest.Script{Polls: 1, Outcome: ssmtest.Success, Stdout: "patched\n"},
			want{status: task.DeviceSucceeded, exit: 0, stdout: "patched\n", runningAfterFirst: true, reportedAfterFirst: true}},
		{"failed", ssmtest.Script{Polls: 2, Outcome: ssmtest.Failed, ExitCode: 3, Stdout: "step 1\n", Stderr: "disk full\n"},
			want{status: task.DeviceFailed, exit: 3, stdout: "step 1\n", stderr: "disk full\n", runningAfterFirst: true, reportedAfterFirst: true}},
		{"execution timeout", ssmtest.Script{Polls: 1, Outcome: ssmtest.TimedOut, Stdout: "waiting\n"},
			want{status: task.DeviceTimedOut, exit: -1, stdout: "waiting\n", reason: "execution timeout", runningAfterFirst: true, reportedAfterFirst: true}},
		{"delivery timeout", ssmtest.Script{Polls: 1, Outcome: ssmtest.DeliveryTimedOut},
			want{status: task.DeviceUndeliverable, exit: -1, reason: "SSM reports DeliveryTimedOut: the managed node did not pick the command up"}},
		{"undeliverable", ssmtest.Script{Polls: 1, Outcome: ssmtest.Undeliverable},
			want{status: task.DeviceUndeliverable, exit: -1, reason: "SSM reports Undeliverable: SSM could not deliver"}},
		{"terminated", ssmtest.Script{Polls: 1, Outcome: ssmtest.Terminated},
			want{status: task.DeviceUndeliverable, exit: -1, reason: "SSM reports Terminated: SSM never sent the command to this node because its batch exceeded maxErrors"}},
		{"long stdout", ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: long},
			want{status: task.DeviceSucceeded, exit: 0, stdout: long[:2500-len(ssmtest.TruncatedMarker)], stdoutCut: true,
				reportedAfterFirst: true}},
		{"long stderr", ssmtest.Script{Polls: 0, Outcome: ssmtest.Failed, ExitCode: 1, Stdout: "short\n", Stderr: long},
			want{status: task.DeviceFailed, exit: 1, stdout: "short\n",
				stderr: long[:2500-len(ssmtest.TruncatedMarker)-len("short\n")-len(ssmtest.ErrorSeparator)], errCut: true,
				reportedAfterFirst: true}},
		{"never", ssmtest.Script{Polls: 0, Outcome: ssmtest.Never},
			want{status: task.DeviceRunning, exit: -1, runningAfterFirst: true, reportedAfterFirst: true}},
	}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = device(i + 1)
		b.srv.Script(ids[i], tc.script)
	}
	tk := b.runningTask("01JTASKOUTCOMES00000000000", ids)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start: %v", err)
	}
	commandID := b.srv.Commands()[0].CommandID

	first, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	firstBy := map[string]task.DeviceUpdate{}
	for _, u := range first {
		firstBy[u.DeviceID] = u
	}
	for i, tc := range cases {
		u, ok := firstBy[ids[i]]
		if ok != tc.want.reportedAfterFirst {
			t.Errorf("%s: reported by the first poll: %v, want %v", tc.name, ok, tc.want.reportedAfterFirst)
		}
		if tc.want.runningAfterFirst && u.Status != task.DeviceRunning {
			t.Errorf("%s: first poll says %s, want running", tc.name, u.Status)
		}
	}

	last := map[string]task.DeviceUpdate{}
	for range 4 {
		b.clock.Advance(5 * time.Second)
		updates, err := b.runner.Poll(t.Context(), tk)
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		for _, u := range updates {
			last[u.DeviceID] = u
		}
	}
	for i, tc := range cases {
		u := last[ids[i]]
		w := tc.want
		if u.Status != w.status {
			t.Errorf("%s: %s, want %s", tc.name, u.Status, w.status)
			continue
		}
		switch {
		case w.exit < 0 && u.ExitCode != nil:
			t.Errorf("%s: exit code %d, want none", tc.name, *u.ExitCode)
		case w.exit >= 0 && (u.ExitCode == nil || *u.ExitCode != w.exit):
			t.Errorf("%s: exit code %v, want %d", tc.name, u.ExitCode, w.exit)
		}
		if u.Stdout != w.stdout || u.Stderr != w.stderr {
			t.Errorf("%s: stdout %q stderr %q, want %q and %q", tc.name, clip(u.Stdout), clip(u.Stderr), clip(w.stdout), clip(w.stderr))
		}
		if u.StdoutTruncated != w.stdoutCut || u.StderrTruncated != w.errCut {
			t.Errorf("%s: truncated %v/%v, want %v/%v", tc.name, u.StdoutTruncated, u.StderrTruncated, w.stdoutCut, w.errCut)
		}
		if !strings.Contains(u.Reason, w.reason) || (w.reason == "" && u.Reason != "") {
			t.Errorf("%s: reason %q, want one containing %q", tc.name, u.Reason, w.reason)
		}
		if u.Ref != commandID || !u.At.Equal(b.clock.Now()) {
			t.Errorf("%s: ref %q at %v, want %s at %v", tc.name, u.Ref, u.At, commandID, b.clock.Now())
		}
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:20] + "…" + s[len(s)-20:]
	}
	return s
}

func TestPollPagesAndSurvivesThrottling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetDefault(ssmtest.Script{Polls: 0, Outcome: ssmtest.Success})
	tk := b.runningTask("01JTASKPAGES00000000000000", devices(120))
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start: %v", err)
	}
	b.srv.ThrottleNext(ssmtest.OpListCommandInvocations, 2)
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatalf("Poll under throttling: %v", err)
	}
	seen := map[string]bool{}
	for _, u := range updates {
		if u.Status != task.DeviceSucceeded || seen[u.DeviceID] {
			t.Errorf("update %s %s (seen before: %v)", u.DeviceID, u.Status, seen[u.DeviceID])
		}
		seen[u.DeviceID] = true
	}
	if len(seen) != 120 {
		t.Errorf("%d devices reported, want 120", len(seen))
	}
	// Three commands of at most 50 invocations: one page each, plus the two throttled calls.
	if n := b.srv.Calls(ssmtest.OpListCommandInvocations); n != 5 {
		t.Errorf("ListCommandInvocations called %d times, want 5", n)
	}
}

func TestCancelStopsDevicesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetDefault(ssmtest.Script{Polls: 0, Outcome: ssmtest.Never})
	b.srv.Script(device(1), ssmtest.Script{Polls: 0, Outcome: ssmtest.Success})
	tk := b.runningTask("01JTASKCANCEL0000000000000", devices(70))
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := b.runner.Poll(t.Context(), tk); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	tk.Status = task.StatusCancelling
	if err := b.runner.Cancel(t.Context(), tk); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpCancelCommand); n != 2 {
		t.Errorf("CancelCommand called %d times, want 2 (one per command)", n)
	}
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	got := map[task.DeviceStatus]int{}
	for _, u := range updates {
		got[u.Status]++
	}
	if got[task.DeviceCancelled] != 69 || got[task.DeviceSucceeded] != 1 || len(updates) != 70 {
		t.Errorf("after cancel: %v, want 69 cancelled and 1 succeeded", got)
	}
	if err := b.runner.Cancel(t.Context(), tk); err != nil {
		t.Fatalf("second Cancel: %v", err)
	}
	if n := b.srv.Calls(ssmtest.OpCancelCommand); n != 2 {
		t.Errorf("a second Cancel called CancelCommand again (%d calls)", n)
	}
}

func TestPollCancelsBatchesNeverSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := b.runningTask("01JTASKUNSENT0000000000000", devices(60))
	if err := b.log.RecordCommand(t.Context(), tk.ID, 0, "refused/"+tk.ID+"/0/InvalidInstanceId: gone"); err != nil {
		t.Fatal(err)
	}
	updates, err := b.runner.Poll(t.Context(), tk)
	if err != nil || len(updates) != 50 {
		t.Fatalf("Poll of a running task with batch 1 unsent: %d updates, %v; want batch 0's 50", len(updates), err)
	}
	tk.Status = task.StatusCancelling
	updates, err = b.runner.Poll(t.Context(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if cancelled := countStatus(updates, task.DeviceCancelled); cancelled != 10 {
		t.Errorf("%d devices of the unsent batch reported cancelled, want 10", cancelled)
	}
}

func TestInvocationsReadsOneDeviceWithItsFullOutput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("x", 30000)
	b.srv.Script(device(1), ssmtest.Script{Polls: 0, Outcome: ssmtest.Failed, ExitCode: 2, Stdout: long, Stderr: "bad\n"})
	tk := b.runningTask("01JTASKINVOCATION000000000", devices(1))
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	cmd := b.srv.Commands()[0].CommandID
	got, err := b.runner.Invocations(t.Context(), cmd, devices(1))
	if err != nil || len(got) != 0 {
		t.Fatalf("Invocations before the device ran: %+v %v; want nothing to report", got, err)
	}
	b.srv.Settle()
	got, err = b.runner.Invocations(t.Context(), cmd, devices(1))
	if err != nil {
		t.Fatal(err)
	}
	u := got[device(1)]
	if u.Status != task.DeviceFailed || u.ExitCode == nil || *u.ExitCode != 2 || len(u.Stdout) != task.StdoutInlineLimit ||
		!u.StdoutTruncated || u.Stderr != "bad\n" || u.StderrTruncated || u.Ref != cmd {
		t.Errorf("Invocations = %s exit %v stdout %d chars (cut %v) stderr %q (cut %v) ref %s",
			u.Status, u.ExitCode, len(u.Stdout), u.StdoutTruncated, u.Stderr, u.StderrTruncated, u.Ref)
	}
	if n := b.srv.Calls(ssmtest.OpListCommandInvocations); n != 0 {
		t.Errorf("one device was listed %d times; GetCommandInvocation alone reads it", n)
	}
}

// TestInvocationsReadsManyDevicesInPages: the devices of one command are read with one page of
// ListCommandInvocations; only the device whose listed output SSM cut is read again, for the
// longer copy.
func TestInvocationsReadsManyDevicesInPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := devices(50)
	loud := strings.Repeat("y", 5000)
	for _, id := range ids {
		b.srv.Script(id, ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: "ok " + id + "\n"})
	}
	b.srv.Script(ids[7], ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: loud})
	tk := b.runningTask("01JTASKINVOCATIONS00000000", ids)
	if err := b.runner.Start(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	b.srv.Settle()
	cmd := b.srv.Commands()[0].CommandID
	lists, gets := b.srv.Calls(ssmtest.OpListCommandInvocations), b.srv.Calls(ssmtest.OpGetCommandInvocation)
	got, err := b.runner.Invocations(t.Context(), cmd, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("%d updates for %d devices", len(got), len(ids))
	}
	for _, id := range ids {
		want := "ok " + id + "\n"
		if id == ids[7] {
			want = loud
		}
		if u := got[id]; u.Status != task.DeviceSucceeded || u.Stdout != want || u.StdoutTruncated || u.Ref != cmd {
			t.Errorf("%s: %s %q (cut %v)", id, u.Status, u.Stdout[:min(len(u.Stdout), 40)], u.StdoutTruncated)
		}
	}
	if l, g := b.srv.Calls(ssmtest.OpListCommandInvocations)-lists, b.srv.Calls(ssmtest.OpGetCommandInvocation)-gets; l != 1 || g != 1 {
		t.Errorf("read 50 devices with %d ListCommandInvocations and %d GetCommandInvocation; want 1 page and 1 read of the cut output", l, g)
	}
}
