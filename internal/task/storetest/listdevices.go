package storetest

import (
	"slices"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testListDevices(e *env) {
	// One task with devices in every status serves the tests that only read.
	tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(12))), task.StatusRunning, 0)
	ids := tk.Request.DeviceIDs
	model := map[string]task.DeviceStatus{}
	at := e.clock.Now()
	var updates []task.DeviceUpdate
	for i, s := range []task.DeviceStatus{task.DeviceRunning, "", task.DeviceSucceeded, task.DeviceFailed, "",
		task.DeviceRunning, task.DeviceCancelled, task.DeviceTimedOut, task.DeviceUndeliverable, "", task.DeviceSucceeded, ""} {
		if s != "" {
			model[ids[i]] = s
			u := task.DeviceUpdate{DeviceID: ids[i], Status: s, At: at}
			if s.Terminal() {
				u.ExitCode = new(i)
			}
			updates = append(updates, u)
		}
	}
	tk, _ = e.apply(tk.ID, updates...)
	statusOf := func(id string) task.DeviceStatus { s, _ := modelStatus(model, ids, id); return s }

	e.run("lists in request order with pending devices", func(e *env) {
		page, err := e.store.ListDevices(e.ctx, tk.ID, task.DeviceQuery{Limit: 100})
		if err != nil {
			e.t.Fatalf("ListDevices = %v", err)
		}
		if len(page.Devices) != len(ids) || page.Next != "" {
			e.t.Fatalf("ListDevices returned %d devices and next %q, want all %d and no cursor", len(page.Devices), page.Next, len(ids))
		}
		for i, d := range page.Devices {
			if d.ID != ids[i] || d.TaskID != tk.ID || d.Status != statusOf(ids[i]) {
				e.t.Errorf("device %d = %s/%s %s, want %s/%s %s", i, d.TaskID, d.ID, d.Status, tk.ID, ids[i], statusOf(ids[i]))
			}
			one, err := e.store.GetDevice(e.ctx, tk.ID, d.ID)
			if err != nil {
				e.t.Fatalf("GetDevice(%s) = %v", d.ID, err)
			}
			sameDevice(e.t, "listed device", d, one)
			if d.Status == task.DevicePending && (d.ExitCode != nil || d.StartedAt != nil || d.CompletedAt != nil) {
				e.t.Errorf("pending device %s has a result: %+v", d.ID, d)
			}
		}
	})

	e.run("filters by status and pages", func(e *env) {
		for _, statuses := range [][]task.DeviceStatus{
			nil,
			{task.DevicePending},
			{task.DeviceSucceeded, task.DeviceFailed},
			{task.DevicePending, task.DeviceRunning},
			{task.DeviceCancelled, task.DeviceTimedOut, task.DeviceUndeliverable, task.DeviceFailed},
			{task.DeviceTimedOut},
		} {
			var want []string
			for _, id := range ids {
				if len(statuses) == 0 || slices.Contains(statuses, statusOf(id)) {
					want = append(want, id)
				}
			}
			for _, limit := range []int{1, 2, 5, 12, 100} {
				got := e.listAllDevices(tk.ID, task.DeviceQuery{Statuses: statuses, Limit: limit}, statuses)
				if !slices.Equal(got, want) {
					e.t.Errorf("ListDevices(%v, limit %d) = %v, want %v", statuses, limit, got, want)
				}
			}
		}
	})

	e.run("pages a large task by the default and the largest page", func(e *env) {
		big := e.move(e.create(e.newTask(e.id("owner"), deviceNames(2500))), task.StatusRunning, 0)
		var done []task.DeviceUpdate
		var want []string
		for i, id := range big.Request.DeviceIDs {
			if i%10 == 3 {
				done = append(done, task.DeviceUpdate{DeviceID: id, Status: task.DeviceSucceeded, At: e.clock.Now(), ExitCode: new(0)})
				want = append(want, id)
			}
		}
		if _, n := e.apply(big.ID, done...); n != len(done) {
			e.t.Fatalf("applied %d of %d updates", n, len(done))
		}
		page, err := e.store.ListDevices(e.ctx, big.ID, task.DeviceQuery{})
		if err != nil || len(page.Devices) != task.DefaultPageSize || page.Next == "" {
			e.t.Fatalf("ListDevices with no limit = %d devices, next %q, %v; want %d and a cursor", len(page.Devices), page.Next, err, task.DefaultPageSize)
		}
		if got := e.listAllDevices(big.ID, task.DeviceQuery{Limit: task.MaxPageSize}, nil); !slices.Equal(got, big.Request.DeviceIDs) {
			e.t.Errorf("paging %d devices by %d lost or reordered some (got %d)", len(big.Request.DeviceIDs), task.MaxPageSize, len(got))
		}
		succeeded := []task.DeviceStatus{task.DeviceSucceeded}
		if got := e.listAllDevices(big.ID, task.DeviceQuery{Statuses: succeeded, Limit: 100}, succeeded); !slices.Equal(got, want) {
			e.t.Errorf("paging the succeeded devices returned %d, want %d", len(got), len(want))
		}
	})

	e.run("GetDevice and unknown ids", func(e *env) {
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: ids[1], Status: task.DevicePending})
		e.wantDevice(tk.ID, &task.Device{TaskID: tk.ID, ID: ids[2], Status: task.DeviceSucceeded, ExitCode: new(2),
			CompletedAt: new(at)})
		_, err := e.store.GetDevice(e.ctx, tk.ID, "dev-not-in-task")
		wantCode(e.t, err, task.CodeNotFound, "GetDevice of a device not in the task")
		_, err = e.store.GetDevice(e.ctx, e.id("missing"), ids[0])
		wantCode(e.t, err, task.CodeNotFound, "GetDevice of an unknown task")
		_, err = e.store.ListDevices(e.ctx, e.id("missing"), task.DeviceQuery{})
		wantCode(e.t, err, task.CodeNotFound, "ListDevices of an unknown task")
		_, err = e.store.ListDevices(e.ctx, tk.ID, task.DeviceQuery{Cursor: "not a cursor!"})
		wantCode(e.t, err, task.CodeInvalidQuery, "ListDevices with a malformed cursor")
	})
}

// listAllDevices pages through a task's devices and returns their ids, checking that pages are
// full but for the last, that no device comes twice, and that every device has a status asked
// for.
func (e *env) listAllDevices(taskID string, q task.DeviceQuery, statuses []task.DeviceStatus) []string {
	e.t.Helper()
	limit := task.PageSize(q.Limit)
	var ids []string
	seen := map[string]bool{}
	for {
		page, err := e.store.ListDevices(e.ctx, taskID, q)
		if err != nil {
			e.t.Fatalf("ListDevices(%+v) = %v", q, err)
		}
		if len(page.Devices) > limit || (page.Next != "" && len(page.Devices) < limit) {
			e.t.Fatalf("ListDevices(%+v) returned %d devices with next %q; want full pages of %d", q, len(page.Devices), page.Next, limit)
		}
		for _, d := range page.Devices {
			if seen[d.ID] {
				e.t.Fatalf("ListDevices(%+v) returned %s a second time", q, d.ID)
			}
			if len(statuses) > 0 && !slices.Contains(statuses, d.Status) {
				e.t.Errorf("ListDevices(%+v) returned %s in status %s", q, d.ID, d.Status)
			}
			seen[d.ID] = true
			ids = append(ids, d.ID)
		}
		if page.Next == "" {
			return ids
		}
		q.Cursor = page.Next
	}
}
