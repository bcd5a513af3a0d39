package task_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/task"
)

// refused marks a status × event pair that the machine must refuse with CodeConflict.
const refused task.Status = ""

// wantNext is the task state machine written out again, independently of status.go, so that a
// change to the machine that is not also made here fails. Every status lists every event.
var wantNext = map[task.Status]map[task.Event]task.Status{
	task.StatusPending: {
		task.EventDispatch: task.StatusRunning,
		task.EventCancel:   task.StatusCancelled,
		task.EventFinish:   refused,
		task.EventFail:     task.StatusFailed,
		task.EventDeadline: refused,
		task.EventStep:     refused,
	},
	task.StatusRunning: {
		task.EventDispatch: refused,
		task.EventCancel:   task.StatusCancelling,
		task.EventFinish:   task.StatusCompleted,
		task.EventFail:     task.StatusFailed,
		task.EventDeadline: task.StatusTimedOut,
		task.EventStep:     task.StatusRunning,
	},
	task.StatusCancelling: {
		task.EventDispatch: refused,
		task.EventCancel:   task.StatusCancelling,
		task.EventFinish:   task.StatusCancelled,
		task.EventFail:     task.StatusFailed,
		task.EventDeadline: task.StatusCancelled,
		task.EventStep:     refused,
	},
	task.StatusCompleted: {
		task.EventDispatch: refused,
		task.EventCancel:   refused,
		task.EventFinish:   refused,
		task.EventFail:     refused,
		task.EventDeadline: refused,
		task.EventStep:     refused,
	},
	task.StatusFailed: {
		task.EventDispatch: refused,
		task.EventCancel:   refused,
		task.EventFinish:   refused,
		task.EventFail:     refused,
		task.EventDeadline: refused,
		task.EventStep:     refused,
	},
	task.StatusTimedOut: {
		task.EventDispatch: refused,
		task.EventCancel:   refused,
		task.EventFinish:   refused,
		task.EventFail:     refused,
		task.EventDeadline: refused,
		task.EventStep:     refused,
	},
	task.StatusCancelled: {
		task.EventDispatch: refused,
		task.EventCancel:   task.StatusCancelled,
		task.EventFinish:   refused,
		task.EventFail:     refused,
		task.EventDeadline: refused,
		task.EventStep:     refused,
	},
}

func TestStatusesAndEventsAreTheDocumentedOnes(t *testing.T) {
	t.Parallel()
	wantStatuses := []task.Status{"pending", "running", "cancelling", "completed", "failed", "timed_out", "cancelled"}
	if got := task.Statuses(); !slices.Equal(got, wantStatuses) {
		t.Errorf("Statuses() = %v, want %v", got, wantStatuses)
	}
	wantEvents := []task.Event{"dispatch", "cancel", "finish", "fail", "deadline", "step"}
	if got := task.Events(); !slices.Equal(got, wantEvents) {
		t.Errorf("Events() = %v, want %v", got, wantEvents)
	}
	wantDevices := []task.DeviceStatus{"pending", "running", "succeeded", "failed", "timed_out", "cancelled", "undeliverable"}
	if got := task.DeviceStatuses(); !slices.Equal(got, wantDevices) {
		t.Errorf("DeviceStatuses() = %v, want %v", got, wantDevices)
	}
}

func TestNextWalksEveryStatusAndEvent(t *testing.T) {
	t.Parallel()
	for _, s := range task.Statuses() {
		row, ok := wantNext[s]
		if !ok {
			t.Errorf("status %s is missing from the expected table", s)
			continue
		}
		for _, e := range task.Events() {
			want, ok := row[e]
			if !ok {
				t.Errorf("pair %s × %s is missing from the expected table", s, e)
				continue
			}
			got, err := s.Next(e)
			if want == refused {
				if !task.IsCode(err, task.CodeConflict) || got != "" {
					t.Errorf("%s.Next(%s) = %q, %v; want a conflict", s, e, got, err)
				}
				continue
			}
			if err != nil || got != want {
				t.Errorf("%s.Next(%s) = %q, %v; want %q", s, e, got, err, want)
			}
		}
	}
}

func TestNextRefusesUnknownStatusesAndEvents(t *testing.T) {
	t.Parallel()
	if _, err := task.Status("paused").Next(task.EventDispatch); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("an unknown status took dispatch: %v", err)
	}
	if _, err := task.StatusRunning.Next(task.Event("pause")); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("running took an unknown event: %v", err)
	}
}

func TestTerminalIsWhereNoEventLeadsOut(t *testing.T) {
	t.Parallel()
	wantTerminal := map[task.Status]bool{
		task.StatusPending: false, task.StatusRunning: false, task.StatusCancelling: false,
		task.StatusCompleted: true, task.StatusFailed: true, task.StatusTimedOut: true, task.StatusCancelled: true,
	}
	for _, s := range task.Statuses() {
		if got := s.Terminal(); got != wantTerminal[s] {
			t.Errorf("%s.Terminal() = %v, want %v", s, got, wantTerminal[s])
		}
		if !s.Valid() {
			t.Errorf("%s.Valid() = false", s)
		}
		if !s.Terminal() {
			continue
		}
		// No event may move a task out of a terminal status.
		for _, e := range task.Events() {
			if next, err := s.Next(e); err == nil && next != s {
				t.Errorf("terminal %s moves to %s on %s", s, next, e)
			}
		}
	}
	if task.Status("paused").Valid() || task.Status("").Valid() {
		t.Error("an unknown status is valid")
	}
}

// wantMove is every device move, written out: row is the current status, column the new one,
// in the order of DeviceStatuses (pending, running, succeeded, failed, timed_out, cancelled,
// undeliverable). Moves go forward only and terminal states are final.
var wantMove = map[task.DeviceStatus][7]bool{
	task.DevicePending:       {false, true, true, true, true, true, true},
	task.DeviceRunning:       {false, false, true, true, true, true, true},
	task.DeviceSucceeded:     {false, false, false, false, false, false, false},
	task.DeviceFailed:        {false, false, false, false, false, false, false},
	task.DeviceTimedOut:      {false, false, false, false, false, false, false},
	task.DeviceCancelled:     {false, false, false, false, false, false, false},
	task.DeviceUndeliverable: {false, false, false, false, false, false, false},
}

func TestCanMoveWalksEveryDevicePair(t *testing.T) {
	t.Parallel()
	all := task.DeviceStatuses()
	if len(all) != 7 {
		t.Fatalf("DeviceStatuses() has %d entries, the expected table has 7", len(all))
	}
	for _, from := range all {
		row, ok := wantMove[from]
		if !ok {
			t.Errorf("device status %s is missing from the expected table", from)
			continue
		}
		for i, to := range all {
			if got := from.CanMove(to); got != row[i] {
				t.Errorf("%s.CanMove(%s) = %v, want %v", from, to, got, row[i])
			}
		}
	}
	for _, d := range all {
		if task.DeviceStatus("lost").CanMove(d) || d.CanMove("lost") {
			t.Errorf("a move between %s and an unknown status is allowed", d)
		}
	}
}

// wantOn is the device event table written out again: for each status, where a caller's
// cancel leads, refused where it may not be taken.
var wantOn = map[task.DeviceStatus]map[task.DeviceEvent]task.DeviceStatus{
	task.DevicePending:       {task.DeviceEventCancel: task.DeviceCancelled},
	task.DeviceRunning:       {task.DeviceEventCancel: task.DeviceRunning},
	task.DeviceSucceeded:     {task.DeviceEventCancel: ""},
	task.DeviceFailed:        {task.DeviceEventCancel: ""},
	task.DeviceTimedOut:      {task.DeviceEventCancel: ""},
	task.DeviceCancelled:     {task.DeviceEventCancel: task.DeviceCancelled},
	task.DeviceUndeliverable: {task.DeviceEventCancel: ""},
}

func TestOnWalksEveryDeviceStatusAndEvent(t *testing.T) {
	t.Parallel()
	if got := task.DeviceEvents(); !slices.Equal(got, []task.DeviceEvent{"cancel"}) {
		t.Errorf("DeviceEvents() = %v, want [cancel]", got)
	}
	for _, d := range task.DeviceStatuses() {
		for _, e := range task.DeviceEvents() {
			want, ok := wantOn[d][e]
			if !ok {
				t.Errorf("pair %s × %s is missing from the expected table", d, e)
				continue
			}
			got, err := d.On(e)
			if want == "" {
				var te *task.Error
				if !errors.As(err, &te) || te.Code != task.CodeConflict || te.DeviceStatus != d || got != "" {
					t.Errorf("%s.On(%s) = %q, %v; want a conflict carrying %s", d, e, got, err, d)
				}
				continue
			}
			if err != nil || got != want {
				t.Errorf("%s.On(%s) = %q, %v; want %s", d, e, got, err, want)
			}
		}
	}
	if _, err := task.DeviceRunning.On("pause"); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("running took an unknown device event: %v", err)
	}
}

func TestDeviceTerminalAndError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   task.DeviceStatus
		terminal bool
		isError  bool
	}{
		{task.DevicePending, false, false},
		{task.DeviceRunning, false, false},
		{task.DeviceSucceeded, true, false},
		{task.DeviceFailed, true, true},
		{task.DeviceTimedOut, true, true},
		{task.DeviceCancelled, true, false},
		{task.DeviceUndeliverable, true, true},
		{task.DeviceStatus("lost"), false, false},
	}
	if len(tests)-1 != len(task.DeviceStatuses()) {
		t.Fatalf("the table covers %d device statuses, there are %d", len(tests)-1, len(task.DeviceStatuses()))
	}
	for _, tt := range tests {
		if got := tt.status.Terminal(); got != tt.terminal {
			t.Errorf("%q.Terminal() = %v, want %v", tt.status, got, tt.terminal)
		}
		if got := tt.status.CountsAsError(); got != tt.isError {
			t.Errorf("%q.CountsAsError() = %v, want %v", tt.status, got, tt.isError)
		}
	}
}

// TestStateMachineDocMatchesTheTable reads the transition table of docs/state-machine.md and
// checks every cell against Status.Next, so the drawing of the machine cannot drift from it.
func TestStateMachineDocMatchesTheTable(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/state-machine.md")
	if err != nil {
		t.Fatal(err)
	}
	header, table := docTable(t, string(doc), "## Task")
	rows := map[task.Status][]string{}
	for name, row := range table {
		rows[task.Status(name)] = row
	}
	if len(header) != len(task.Events())+1 {
		t.Fatalf("the doc's table has columns %q, want one per event", header)
	}
	for i, e := range task.Events() {
		if header[i+1] != string(e) {
			t.Errorf("column %d of the doc's table is %q, want %q", i+1, header[i+1], e)
		}
	}
	if len(rows) != len(task.Statuses()) {
		t.Errorf("the doc's table has %d rows, want one per status (%d)", len(rows), len(task.Statuses()))
	}
	for _, s := range task.Statuses() {
		row, ok := rows[s]
		if !ok || len(row) != len(task.Events()) {
			t.Errorf("the doc's table has no full row for %s: %q", s, row)
			continue
		}
		for i, e := range task.Events() {
			next, err := s.Next(e)
			cell := row[i]
			switch {
			case err != nil && !strings.HasPrefix(cell, "—"):
				t.Errorf("doc: %s × %s is %q, but the table refuses it", s, e, cell)
			case err == nil && cell != string(next):
				t.Errorf("doc: %s × %s is %q, the table says %s", s, e, cell, next)
			}
		}
	}
}

// TestDeviceEventDocMatchesTheTable checks the device event table of docs/state-machine.md
// against DeviceStatus.On, cell by cell.
func TestDeviceEventDocMatchesTheTable(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/state-machine.md")
	if err != nil {
		t.Fatal(err)
	}
	header, rows := docTable(t, string(doc), "## Device")
	if len(header) != len(task.DeviceEvents())+1 {
		t.Fatalf("the doc's device table has columns %q, want one per device event", header)
	}
	for i, e := range task.DeviceEvents() {
		if header[i+1] != string(e) {
			t.Errorf("column %d of the doc's device table is %q, want %q", i+1, header[i+1], e)
		}
	}
	if len(rows) != len(task.DeviceStatuses()) {
		t.Errorf("the doc's device table has %d rows, want one per device status (%d)", len(rows), len(task.DeviceStatuses()))
	}
	for _, d := range task.DeviceStatuses() {
		row, ok := rows[string(d)]
		if !ok || len(row) != len(task.DeviceEvents()) {
			t.Errorf("the doc's device table has no full row for %s: %q", d, row)
			continue
		}
		for i, e := range task.DeviceEvents() {
			next, err := d.On(e)
			cell := row[i]
			switch {
			case err != nil && !strings.HasPrefix(cell, "—"):
				t.Errorf("doc: %s × %s is %q, but the table refuses it", d, e, cell)
			case err == nil && strings.Fields(cell)[0] != string(next):
				t.Errorf("doc: %s × %s is %q, the table says %s", d, e, cell, next)
			}
		}
	}
}

// docTable returns the header and the rows, by their first cell, of the first table after the
// heading section in a Markdown document, up to the next heading of the same level.
func docTable(t *testing.T, doc, section string) ([]string, map[string][]string) {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n"+section+"\n")
	if !ok {
		t.Fatalf("the doc has no section %q", section)
	}
	if end := strings.Index(rest, "\n## "); end >= 0 {
		rest = rest[:end]
	}
	var header []string
	rows := map[string][]string{}
	for line := range strings.Lines(rest) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| ---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		rows[cells[0]] = cells[1:]
	}
	return header, rows
}
