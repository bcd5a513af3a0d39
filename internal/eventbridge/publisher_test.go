package eventbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var (
	created   = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	completed = time.Date(2025, 3, 1, 10, 42, 17, 0, time.UTC)
)

// notification returns a finished task's notification with devices devices, of which the first
// half succeeded, the next quarter failed and the rest were cancelled, each id idLen long.
func notification(status task.Status, devices, idLen int) task.Notification {
	id := func(i int) string {
		s := fmt.Sprintf("i-%017x", i)
		if idLen > len(s) {
			s += strings.Repeat("x", idLen-len(s))
		}
		return s
	}
	r := &task.Result{SucceededDevices: []string{}, FailedDevices: []string{}, CancelledDevices: []string{}}
	c := task.Counts{Total: devices}
	for i := range devices {
		var list *[]string
		switch {
		case i < devices/2:
			list, c.Succeeded = &r.SucceededDevices, c.Succeeded+1
		case i < devices*3/4:
			list, c.Failed = &r.FailedDevices, c.Failed+1
		default:
			list, c.Cancelled = &r.CancelledDevices, c.Cancelled+1
		}
		// The engine caps each list when it computes the result.
		if len(*list) < task.ResultListCap {
			*list = append(*list, id(i))
		} else {
			r.Truncated = true
		}
	}
	if status != task.StatusCompleted {
		r.Reason = "reason for " + string(status)
	}
	return task.Notification{
		ID: task.NotificationID("01JDTASK0000000000000000", status), TaskID: "01JDTASK0000000000000000",
		Owner: "arn:aws:iam::123456789012:role/deployer", Status: status, Version: 17,
		CreatedAt: created, CompletedAt: completed, ScriptURL: "s3://scripts/patch.sh?v=1&x=<y>",
		Counts: c, Result: r,
	}
}

// decodeStrict decodes a detail, refusing any field the schema does not have.
func decodeStrict(t *testing.T, s string) Detail {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var d Detail
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("detail does not match the schema: %v\n%s", err, s)
	}
	return d
}

func TestNewDetailMapsEveryField(t *testing.T) {
	t.Parallel()
	n := notification(task.StatusFailed, 4, 0)
	n.Counts.Undeliverable, n.Counts.TimedOut = 1, 2 // distinct values catch a crossed mapping
	want := Detail{
		SchemaVersion: 1, ID: "01JDTASK0000000000000000:failed", TaskID: "01JDTASK0000000000000000",
		Owner: "arn:aws:iam::123456789012:role/deployer", Status: task.StatusFailed, Version: 17,
		CreatedAt: created, CompletedAt: completed, ScriptURL: "s3://scripts/patch.sh?v=1&x=<y>",
		Counts: Counts{Total: 4, Succeeded: 2, Failed: 1, TimedOut: 2, Cancelled: 1, Undeliverable: 1},
		Result: Result{
			SucceededDevices: []string{"i-00000000000000000", "i-00000000000000001"},
			FailedDevices:    []string{"i-00000000000000002"},
			CancelledDevices: []string{"i-00000000000000003"},
			Reason:           "reason for failed",
		},
	}
	if got := NewDetail(n); !reflect.DeepEqual(got, want) {
		t.Errorf("NewDetail:\n got %+v\nwant %+v", got, want)
	}
}

func TestNewDetailWithoutResultHasEmptyLists(t *testing.T) {
	t.Parallel()
	n := notification(task.StatusCancelled, 0, 0)
	n.Result, n.ID = nil, ""
	d := NewDetail(n)
	if d.ID != task.NotificationID(n.TaskID, n.Status) {
		t.Errorf("id = %q, want the notification id derived from task and status", d.ID)
	}
	s, err := encode(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, `"succeededDevices":[],"failedDevices":[],"cancelledDevices":[]`) {
		t.Errorf("lists are not empty arrays: %s", s)
	}
}

func TestEntry(t *testing.T) {
	t.Parallel()
	p := New(nil, "fleetrun-bus", Options{})
	n := notification(task.StatusCompleted, 3, 0)
	e, err := p.Entry(n)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(e.Source) != "fleetrun" || aws.ToString(e.DetailType) != "Task Finished" ||
		aws.ToString(e.EventBusName) != "fleetrun-bus" || len(e.Resources) != 0 {
		t.Errorf("entry envelope = source %q detail-type %q bus %q resources %v",
			aws.ToString(e.Source), aws.ToString(e.DetailType), aws.ToString(e.EventBusName), e.Resources)
	}
	if e.Time == nil || !e.Time.Equal(completed) {
		t.Errorf("time = %v, want completedAt %v", e.Time, completed)
	}
	if got := decodeStrict(t, aws.ToString(e.Detail)); !reflect.DeepEqual(got, NewDetail(n)) {
		t.Errorf("detail round trip:\n got %+v\nwant %+v", got, NewDetail(n))
	}
	if !strings.Contains(aws.ToString(e.Detail), `"scriptUrl":"s3://scripts/patch.sh?v=1&x=<y>"`) {
		t.Errorf("script url escaped: %s", aws.ToString(e.Detail))
	}
	if def, _ := New(nil, "", Options{}).Entry(n); def.EventBusName != nil {
		t.Errorf("an empty bus name must leave the default bus, got %q", aws.ToString(def.EventBusName))
	}
}

func TestEntryUsesClockWithoutCompletion(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	n := notification(task.StatusCancelled, 1, 0)
	n.CompletedAt = time.Time{}
	e, err := New(nil, "", Options{Now: func() time.Time { return now }}).Entry(n)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(now) || !decodeStrict(t, aws.ToString(e.Detail)).CompletedAt.Equal(now) {
		t.Errorf("time = %v, want the clock's %v", e.Time, now)
	}
}

func TestEntryRefusesNonTerminal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		taskID string
		status task.Status
	}{
		{"pending", "T", task.StatusPending},
		{"running", "T", task.StatusRunning},
		{"cancelling", "T", task.StatusCancelling},
		{"unknown", "T", "exploded"},
		{"no task", "", task.StatusCompleted},
	} {
		n := notification(task.StatusCompleted, 1, 0)
		n.TaskID, n.Status = c.taskID, c.status
		if _, err := New(nil, "", Options{}).Entry(n); !task.IsCode(err, task.CodeInvalid) {
			t.Errorf("%s: err = %v, want invalid", c.name, err)
		}
	}
}

func TestEntrySizeLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		devices int
		idLen   int
		trim    bool
	}{
		{"10,000 SSM node ids fit with every listed id", 10000, 19, false},
		{"10,000 ids of 128 characters are trimmed", 10000, 128, true},
		{"a small task is untouched", 3, 128, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := notification(task.StatusCompleted, c.devices, c.idLen)
			e, err := New(nil, "bus", Options{}).Entry(n)
			if err != nil {
				t.Fatal(err)
			}
			if size := entrySize(e); size >= MaxEntrySize {
				t.Fatalf("entry is %d bytes, limit %d", size, MaxEntrySize)
			}
			d := decodeStrict(t, aws.ToString(e.Detail))
			if d.Counts.Total != c.devices || d.Counts.Succeeded+d.Counts.Failed+d.Counts.Cancelled != c.devices {
				t.Errorf("counts %+v are not exact for %d devices", d.Counts, c.devices)
			}
			lists := [][2][]string{
				{d.Result.SucceededDevices, n.Result.SucceededDevices},
				{d.Result.FailedDevices, n.Result.FailedDevices},
				{d.Result.CancelledDevices, n.Result.CancelledDevices},
			}
			cut := false
			for _, l := range lists {
				got, full := l[0], l[1]
				if !slices.Equal(got, full[:len(got)]) {
					t.Errorf("a listed id list is not a prefix of the result's")
				}
				cut = cut || len(got) < len(full)
			}
			if cut != c.trim {
				t.Errorf("trimmed = %v, want %v", cut, c.trim)
			}
			if d.Result.Truncated != (n.Result.Truncated || cut) {
				t.Errorf("truncated = %v with result truncated %v and trimmed %v", d.Result.Truncated, n.Result.Truncated, cut)
			}
			if c.trim {
				// The trim is as small as it can be: one more id per list would not fit.
				k := max(len(d.Result.SucceededDevices), len(d.Result.FailedDevices), len(d.Result.CancelledDevices))
				full := NewDetail(n)
				full.CompletedAt = d.CompletedAt
				s, _ := encode(trimmed(full, k+1))
				if entrySize(e)-len(aws.ToString(e.Detail))+len(s) < MaxEntrySize {
					t.Errorf("lists cut to %d ids although %d fit", k, k+1)
				}
				if k == 0 {
					t.Errorf("every id was cut")
				}
			}
		})
	}
}

func TestEntryTooLargeWithoutIDs(t *testing.T) {
	t.Parallel()
	n := notification(task.StatusFailed, 2, 0)
	n.Result.Reason = strings.Repeat("r", MaxEntrySize)
	if _, err := New(nil, "", Options{}).Entry(n); err == nil {
		t.Fatal("an event that cannot fit was accepted")
	}
}

// fakeBus answers PutEvents from a script of entry error codes ("" accepts the entry).
type fakeBus struct {
	codes []string
	err   error
	calls int
}

func (f *fakeBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if len(in.Entries) != 1 {
		return nil, fmt.Errorf("fake: %d entries", len(in.Entries))
	}
	code := ""
	if f.calls <= len(f.codes) {
		code = f.codes[f.calls-1]
	}
	if code == "" {
		return &eventbridge.PutEventsOutput{Entries: []types.PutEventsResultEntry{{EventId: aws.String("e1")}}}, nil
	}
	return &eventbridge.PutEventsOutput{FailedEntryCount: 1,
		Entries: []types.PutEventsResultEntry{{ErrorCode: aws.String(code), ErrorMessage: aws.String("no")}}}, nil
}

func TestPublishRetries(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	for _, c := range []struct {
		name      string
		codes     []string
		err       error
		wantCalls int
		wantWaits int
		wantCode  string // "" for success
		wantErr   error
	}{
		{"accepted", nil, nil, 1, 0, "", nil},
		{"throttled then accepted", []string{"ThrottlingException", "InternalFailure"}, nil, 3, 2, "", nil},
		{"throttled every time", []string{"ThrottlingException", "ThrottlingException", "ThrottlingException", "ThrottlingException", ""}, nil, 4, 3, "ThrottlingException", nil},
		{"refused for good", []string{"NotAuthorizedForSourceException"}, nil, 1, 0, "NotAuthorizedForSourceException", nil},
		{"request failed", nil, boom, 1, 0, "", boom},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			bus := &fakeBus{codes: c.codes, err: c.err}
			var waits []time.Duration
			p := New(bus, "", Options{Attempts: 4, Backoff: 100 * time.Millisecond,
				Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }})
			err := p.Publish(context.Background(), notification(task.StatusCompleted, 2, 0))
			if bus.calls != c.wantCalls {
				t.Errorf("PutEvents called %d times, want %d", bus.calls, c.wantCalls)
			}
			var ee *EntryError
			switch {
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) {
					t.Errorf("err = %v, want %v", err, c.wantErr)
				}
			case c.wantCode != "":
				if !errors.As(err, &ee) || ee.Code != c.wantCode {
					t.Errorf("err = %v, want an EntryError %s", err, c.wantCode)
				}
			case err != nil:
				t.Errorf("err = %v", err)
			}
			if len(waits) != c.wantWaits {
				t.Errorf("waited %d times, want %d", len(waits), c.wantWaits)
			}
			for i, w := range waits {
				base := 100 * time.Millisecond << i
				if w < base/2 || w > base {
					t.Errorf("wait %d = %v, want within [%v, %v]", i, w, base/2, base)
				}
			}
		})
	}
}

func TestPublishStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{codes: []string{"ThrottlingException", "ThrottlingException"}}
	ctx, cancel := context.WithCancel(context.Background())
	p := New(bus, "", Options{Sleep: func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }})
	err := p.Publish(ctx, notification(task.StatusCompleted, 1, 0))
	var ee *EntryError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ee) || bus.calls != 1 {
		t.Errorf("err = %v after %d calls, want cancelled after 1 with the last refusal", err, bus.calls)
	}
}
