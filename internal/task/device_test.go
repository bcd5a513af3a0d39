package task_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestApplyMovesForwardOnly(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, from := range task.DeviceStatuses() {
		for _, to := range task.DeviceStatuses() {
			d := task.Device{ID: "d", Status: from, Stdout: "kept"}
			got := d.Apply(task.DeviceUpdate{DeviceID: "d", Status: to}, now)
			want := task.Ignored
			if from.CanMove(to) {
				want = task.Moved
			}
			if got != want {
				t.Errorf("%s → %s: Apply = %v, want %v", from, to, got, want)
			}
			if want == task.Ignored && (d.Status != from || d.Stdout != "kept") {
				t.Errorf("%s → %s: an ignored update changed the device to %+v", from, to, d)
			}
		}
	}
}

func TestApplyKeepsWhatTheUpdateLeavesOut(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	now := start.Add(time.Minute)
	d := task.Device{ID: "d", Status: task.DevicePending}
	d.Apply(task.DeviceUpdate{Status: task.DeviceRunning, At: start, Ref: "pgid:7", Stdout: "partial", StdoutTruncated: true}, now)
	d.Apply(task.DeviceUpdate{Status: task.DeviceFailed, ExitCode: new(3), Stdout: "whole"}, now)
	if d.Ref != "pgid:7" || d.StartedAt == nil || !d.StartedAt.Equal(start) || d.StartedAt.Location() != time.UTC {
		t.Errorf("ref %q started %v: want the running update's, in UTC", d.Ref, d.StartedAt)
	}
	if d.CompletedAt == nil || !d.CompletedAt.Equal(now) {
		t.Errorf("completed %v, want the store's time when the update has none", d.CompletedAt)
	}
	// A stream the update reports replaces the old one with its own flag.
	if d.Stdout != "whole" || d.StdoutTruncated || d.ExitCode == nil || *d.ExitCode != 3 {
		t.Errorf("device = %+v; want stdout %q not truncated, exit 3", d, "whole")
	}
}

func TestApplyCutsOutputOnAUTF8Boundary(t *testing.T) {
	t.Parallel()
	// "é" is two bytes, so the limit falls inside a character.
	stdout := "x" + strings.Repeat("é", task.StdoutInlineLimit)
	stderr := strings.Repeat("e", task.StderrInlineLimit)
	d := task.Device{Status: task.DevicePending}
	d.Apply(task.DeviceUpdate{Status: task.DeviceSucceeded, Stdout: stdout, Stderr: stderr}, time.Now())
	if len(d.Stdout) > task.StdoutInlineLimit || len(d.Stdout) < task.StdoutInlineLimit-3 || !utf8.ValidString(d.Stdout) ||
		!strings.HasPrefix(stdout, d.Stdout) || !d.StdoutTruncated {
		t.Errorf("stdout of %d bytes, valid %v, truncated %v: want a valid prefix within %d bytes, flagged",
			len(d.Stdout), utf8.ValidString(d.Stdout), d.StdoutTruncated, task.StdoutInlineLimit)
	}
	if d.Stderr != stderr || d.StderrTruncated {
		t.Errorf("stderr of exactly the limit: %d bytes, truncated %v; want it whole", len(d.Stderr), d.StderrTruncated)
	}
}

func TestApplyTakesALongerOutputOnATerminalDevice(t *testing.T) {
	t.Parallel()
	now := time.Now()
	d := task.Device{Status: task.DevicePending}
	d.Apply(task.DeviceUpdate{Status: task.DeviceFailed, ExitCode: new(1), Stdout: "short", StdoutTruncated: true, Stderr: "err", Reason: "r"}, now)
	done := *d.CompletedAt

	steps := []struct {
		name string
		u    task.DeviceUpdate
		want task.Applied
		out  string
		cut  bool
	}{
		{"another status", task.DeviceUpdate{Status: task.DeviceSucceeded, Stdout: "much longer output"}, task.Ignored, "short", true},
		{"shorter", task.DeviceUpdate{Status: task.DeviceFailed, Stdout: "s"}, task.Ignored, "short", true},
		{"as long", task.DeviceUpdate{Status: task.DeviceFailed, Stdout: "SHORT"}, task.Ignored, "short", true},
		{"longer", task.DeviceUpdate{Status: task.DeviceFailed, Stdout: "short and the rest", ExitCode: new(9), Reason: "other"}, task.Refreshed, "short and the rest", false},
	}
	for _, st := range steps {
		if got := d.Apply(st.u, now.Add(time.Hour)); got != st.want {
			t.Errorf("%s: Apply = %v, want %v", st.name, got, st.want)
		}
		if d.Stdout != st.out || d.StdoutTruncated != st.cut {
			t.Errorf("%s: stdout %q truncated %v, want %q %v", st.name, d.Stdout, d.StdoutTruncated, st.out, st.cut)
		}
	}
	// Nothing but the output changes: not the status, exit code, reason or completion time.
	if d.Status != task.DeviceFailed || *d.ExitCode != 1 || d.Reason != "r" || !d.CompletedAt.Equal(done) || d.Stderr != "err" {
		t.Errorf("a refresh changed more than the output: %+v", d)
	}
}

func TestCountsEndedCountsUnstartedDevicesAsTheyAreListed(t *testing.T) {
	t.Parallel()
	c := task.Counts{Total: 5, Pending: 2, Running: 1, Succeeded: 1, Cancelled: 1}
	got := c.Ended()
	if got.Pending != 0 || got.Of(task.UnstartedAtEnd) != c.Of(task.UnstartedAtEnd)+2 || got.Total != 5 || got.Running != 1 {
		t.Errorf("Ended() = %+v", got)
	}
	ended := &task.Task{ID: "t", Status: task.StatusFailed}
	if d := ended.Unstarted("d"); d.Status != task.UnstartedAtEnd || d.Reason == "" {
		t.Errorf("an unstarted device of an ended task is %+v", d)
	}
}

func TestInlineCutsOnAUTF8Boundary(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in      string
		limit   int
		want    string
		wantCut bool
	}{
		{"short", 10, "short", false},
		{"exactly", 7, "exactly", false},
		{"abcdef", 3, "abc", true},
		{"ab€", 4, "ab", true}, // € is three bytes: cut before it, not inside it
		{"ab€", 5, "ab€", false},
		{strings.Repeat("é", 10), 5, "éé", true},
	} {
		got, cut := task.Inline(c.in, false, c.limit)
		if got != c.want || cut != c.wantCut || !utf8.ValidString(got) {
			t.Errorf("inline(%q, %d) = %q, %v; want %q, %v", c.in, c.limit, got, cut, c.want, c.wantCut)
		}
	}
	// A cut the runner made already stays flagged, even when the text fits.
	if _, cut := task.Inline("short", true, 10); !cut {
		t.Error("a runner's truncated flag was dropped")
	}
}

func TestApplyTakesACancelOnlyWhereTheTableAllows(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	running := task.Task{ID: "t", Status: task.StatusRunning}
	for _, from := range task.DeviceStatuses() {
		d := task.Device{ID: "d", Status: from}
		u, err := task.CancelDevice(&running, &d, now)
		next, allowed := from.On(task.DeviceEventCancel)
		if allowed != nil {
			var te *task.Error
			if !errors.As(err, &te) || te.Code != task.CodeConflict || te.DeviceStatus != from {
				t.Errorf("CancelDevice of a %s device = %v; want a conflict carrying %s", from, err, from)
			}
			// A forged cancel update is ignored by Apply all the same.
			forged := task.DeviceUpdate{DeviceID: "d", Event: task.DeviceEventCancel, Status: task.DeviceCancelled}
			if got := d.Apply(forged, now); got != task.Ignored || d.Status != from {
				t.Errorf("a forged cancel of a %s device: %v, device %s", from, got, d.Status)
			}
			continue
		}
		if err != nil || u.Status != next || u.Event != task.DeviceEventCancel {
			t.Fatalf("CancelDevice of a %s device = %+v, %v", from, u, err)
		}
		want := task.Moved
		switch {
		case next == from && from.Terminal():
			want = task.Ignored
		case next == from:
			want = task.Marked
		}
		got := d.Apply(u, now)
		if got != want || d.Status != next {
			t.Errorf("cancel of a %s device: %v, device %+v; want %v to %s", from, got, d, want, next)
		}
		if want == task.Ignored {
			if d.CancelRequestedAt != nil {
				t.Errorf("a cancel of an ended %s device marked it", from)
			}
			continue
		}
		if d.CancelRequestedAt == nil || !d.CancelRequestedAt.Equal(now) {
			t.Errorf("cancel of a %s device: marked %v, want %v", from, d.CancelRequestedAt, now)
		}
		if got := d.Apply(u, now.Add(time.Second)); got != task.Ignored || !d.CancelRequestedAt.Equal(now) {
			t.Errorf("a repeated cancel of a %s device: %v; want ignored, the first time kept", from, got)
		}
	}
	// An update that claims a status the table does not lead to is ignored.
	d := task.Device{ID: "d", Status: task.DeviceRunning}
	if got := d.Apply(task.DeviceUpdate{Event: task.DeviceEventCancel, Status: task.DeviceCancelled}, now); got != task.Ignored || d.Status != task.DeviceRunning {
		t.Errorf("a cancel that jumps a running device to cancelled: %v, %s", got, d.Status)
	}
	// The runner's report of the stop then ends the marked device.
	d.Apply(task.DeviceUpdate{Event: task.DeviceEventCancel, Status: task.DeviceRunning}, now)
	if got := d.Apply(task.DeviceUpdate{Status: task.DeviceCancelled, Reason: "stopped"}, now); got != task.Moved || d.Status != task.DeviceCancelled {
		t.Errorf("the runner's cancelled report of a marked device: %v, %s", got, d.Status)
	}
}

func TestCancelDeviceRefusesAFinishedTask(t *testing.T) {
	t.Parallel()
	for _, s := range task.Statuses() {
		tk := task.Task{ID: "t", Status: s}
		_, err := task.CancelDevice(&tk, &task.Device{ID: "d", Status: task.DevicePending}, time.Now())
		var te *task.Error
		switch {
		case s.Terminal() && (!errors.As(err, &te) || te.Code != task.CodeConflict || te.Status != s):
			t.Errorf("cancel of a device of a %s task: %v; want a conflict carrying %s", s, err, s)
		case !s.Terminal() && err != nil:
			t.Errorf("cancel of a pending device of a %s task: %v", s, err)
		}
	}
}

func TestApplyRefreshesARunningDevicesOutput(t *testing.T) {
	t.Parallel()
	now := time.Now()
	d := task.Device{ID: "d", Status: task.DevicePending}
	d.Apply(task.DeviceUpdate{Status: task.DeviceRunning, Ref: "pgid:9"}, now)
	if got := d.Apply(task.DeviceUpdate{Status: task.DeviceRunning, Stdout: "line 1\n"}, now); got != task.Refreshed || d.Stdout != "line 1\n" {
		t.Fatalf("first refresh: %v, stdout %q", got, d.Stdout)
	}
	if got := d.Apply(task.DeviceUpdate{Status: task.DeviceRunning, Stdout: "line 1\nline 2\n", Ref: "other"}, now); got != task.Refreshed ||
		d.Stdout != "line 1\nline 2\n" || d.Ref != "pgid:9" {
		t.Errorf("second refresh: %v, %+v; want the longer output and nothing else changed", got, d)
	}
	if got := d.Apply(task.DeviceUpdate{Status: task.DeviceRunning, Stdout: "line 1\n"}, now); got != task.Ignored || d.Stdout != "line 1\nline 2\n" {
		t.Errorf("a late, shorter refresh: %v, stdout %q; want ignored", got, d.Stdout)
	}
}
