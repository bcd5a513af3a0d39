package storetest

import (
	"cmp"
	"slices"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testListTasks(e *env) {
	e.run("newest first, ties by id, one owner only", func(e *env) {
		a, b := e.id("owner-a"), e.id("owner-b")
		base := e.clock.Now()
		offsets := []time.Duration{1, 3, 2, 4, 4, 0, 4} // seconds; three tasks share the newest time
		var want []*task.Task
		for i, off := range offsets {
			owner := a
			if i%3 == 2 {
				owner = b
			}
			tk := e.newTask(owner, deviceNames(1))
			tk.CreatedAt = base.Add(off * time.Second)
			tk.UpdatedAt = tk.CreatedAt
			e.create(tk)
			if owner == a {
				want = append(want, tk)
			}
		}
		slices.SortFunc(want, newestFirst)
		page, err := e.store.ListTasks(e.ctx, task.ListQuery{Owner: a, Limit: 100})
		if err != nil {
			e.t.Fatalf("ListTasks = %v", err)
		}
		if got, w := taskIDs(page.Tasks), taskIDs(want); !slices.Equal(got, w) {
			e.t.Fatalf("ListTasks(%s) = %v, want %v", a, got, w)
		}
		for i := range want {
			sameTask(e.t, "listed task", page.Tasks[i], want[i])
		}
		if page.Next != "" {
			e.t.Errorf("Next = %q on a page holding every task", page.Next)
		}
		if got := e.listAll(task.ListQuery{Owner: b, Limit: 100}); len(got) != 2 {
			e.t.Errorf("ListTasks(%s) = %v, want its 2 tasks", b, got)
		}
		if got := e.listAll(task.ListQuery{Owner: e.id("nobody")}); len(got) != 0 {
			e.t.Errorf("ListTasks of an owner with no tasks = %v", got)
		}
	})

	e.run("pages through with the cursor", func(e *env) {
		owner := e.id("owner")
		base := e.clock.Now()
		var want []*task.Task
		for i := range 23 {
			tk := e.newTask(owner, deviceNames(1))
			tk.CreatedAt = base.Add(time.Duration(i%9) * time.Millisecond) // ties across page boundaries
			e.create(tk)
			want = append(want, tk)
		}
		slices.SortFunc(want, newestFirst)
		for _, limit := range []int{1, 5, 23, 100} {
			if got := e.listAll(task.ListQuery{Owner: owner, Limit: limit}); !slices.Equal(got, taskIDs(want)) {
				e.t.Errorf("paging by %d = %v, want %v", limit, got, taskIDs(want))
			}
		}
	})

	e.run("filters by status", func(e *env) {
		owner := e.id("owner")
		byStatus := map[task.Status][]string{}
		plan := []task.Status{task.StatusRunning, task.StatusPending, task.StatusCancelled, task.StatusRunning,
			task.StatusCompleted, task.StatusPending, task.StatusRunning}
		for _, s := range plan {
			e.clock.Advance(time.Millisecond)
			tk := e.create(e.newTask(owner, deviceNames(1)))
			switch s {
			case task.StatusRunning:
				e.move(tk, task.StatusRunning, 0)
			case task.StatusCancelled:
				e.move(tk, task.StatusCancelled, time.Hour)
			case task.StatusCompleted:
				e.move(e.move(tk, task.StatusRunning, 0), task.StatusCompleted, time.Hour)
			}
			byStatus[s] = append([]string{tk.ID}, byStatus[s]...) // newest first
		}
		for _, s := range task.Statuses() {
			for _, limit := range []int{1, 50} {
				got := e.listAll(task.ListQuery{Owner: owner, Status: s, Limit: limit})
				if !slices.Equal(got, byStatus[s]) {
					e.t.Errorf("ListTasks(status %s, limit %d) = %v, want %v", s, limit, got, byStatus[s])
				}
			}
		}
		page, err := e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner, Status: task.StatusRunning, Limit: 50})
		if err != nil {
			e.t.Fatalf("ListTasks = %v", err)
		}
		for _, tk := range page.Tasks {
			if tk.Status != task.StatusRunning {
				e.t.Errorf("status filter returned a %s task", tk.Status)
			}
		}
	})

	e.run("respects the limit", func(e *env) {
		owner := e.id("owner")
		for range 7 {
			e.clock.Advance(time.Millisecond)
			e.create(e.newTask(owner, deviceNames(1)))
		}
		page, err := e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner, Limit: 3})
		if err != nil || len(page.Tasks) != 3 || page.Next == "" {
			e.t.Errorf("ListTasks(limit 3) = %v, %v; want 3 tasks and a cursor", page, err)
		}
		page, err = e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner})
		if err != nil || len(page.Tasks) != 7 {
			e.t.Errorf("ListTasks(no limit) = %v, %v; want the default page size to hold all 7", page, err)
		}
		_, err = e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner, Cursor: "not a cursor!"})
		wantCode(e.t, err, task.CodeInvalidQuery, "ListTasks with a malformed cursor")
	})

	e.run("leaves out expired tasks", func(e *env) {
		owner := e.id("owner")
		var keep []string
		for i := range 4 {
			e.clock.Advance(time.Millisecond)
			tk := e.create(e.newTask(owner, deviceNames(1)))
			switch i {
			case 1:
				e.move(tk, task.StatusCancelled, time.Hour)
			case 2:
				e.move(tk, task.StatusCancelled, 3*time.Hour)
				keep = append([]string{tk.ID}, keep...)
			default:
				keep = append([]string{tk.ID}, keep...)
			}
		}
		e.clock.Advance(2 * time.Hour)
		for _, limit := range []int{1, 10} {
			if got := e.listAll(task.ListQuery{Owner: owner, Limit: limit}); !slices.Equal(got, keep) {
				e.t.Errorf("ListTasks(limit %d) after expiry = %v, want %v", limit, got, keep)
			}
		}
	})
}

// testRelaunches checks that a task keeps the task it relaunched, and that listing by
// RelaunchOf returns exactly the owner's live relaunches of that task, newest first.
func testRelaunches(e *env) {
	e.run("lists a task's relaunches", func(e *env) {
		owner, other := e.id("owner"), e.id("other")
		orig := e.move(e.create(e.newTask(owner, deviceNames(3))), task.StatusCancelled, 24*time.Hour)
		unrelated := e.move(e.create(e.newTask(owner, deviceNames(3))), task.StatusCancelled, 24*time.Hour)
		var want []string // newest first
		relaunch := func(owner, of string) *task.Task {
			e.clock.Advance(time.Millisecond)
			tk := e.newTask(owner, deviceNames(2))
			tk.RelaunchOf = of
			stored := e.create(tk)
			if stored.RelaunchOf != of {
				e.t.Errorf("CreateTask returned relaunchOf %q, want %q", stored.RelaunchOf, of)
			}
			sameTask(e.t, "a relaunch read back", e.get(tk.ID), tk)
			return tk
		}
		for range 5 {
			want = append([]string{relaunch(owner, orig.ID).ID}, want...)
		}
		relaunch(other, orig.ID) // another owner's: never listed for owner
		relaunch(owner, unrelated.ID)
		for _, limit := range []int{1, 2, 5, 50} {
			if got := e.listAll(task.ListQuery{Owner: owner, RelaunchOf: orig.ID, Limit: limit}); !slices.Equal(got, want) {
				e.t.Errorf("relaunches of %s by %d = %v, want %v", orig.ID, limit, got, want)
			}
		}
		if got := e.listAll(task.ListQuery{Owner: owner, RelaunchOf: unrelated.ID}); len(got) != 1 {
			e.t.Errorf("relaunches of the other task = %v, want one", got)
		}
		if got := e.listAll(task.ListQuery{Owner: owner, RelaunchOf: e.id("none")}); len(got) != 0 {
			e.t.Errorf("relaunches of a task never relaunched = %v", got)
		}

		// By status: one relaunch is running, one has ended and expired.
		running := e.move(e.get(want[1]), task.StatusRunning, 0)
		gone := e.move(e.get(want[0]), task.StatusCancelled, time.Minute)
		if got := e.listAll(task.ListQuery{Owner: owner, RelaunchOf: orig.ID, Status: task.StatusRunning}); !slices.Equal(got, []string{running.ID}) {
			e.t.Errorf("running relaunches = %v, want %v", got, []string{running.ID})
		}
		e.clock.Advance(2 * time.Minute)
		if got := e.listAll(task.ListQuery{Owner: owner, RelaunchOf: orig.ID, Limit: 1}); slices.Contains(got, gone.ID) || len(got) != 4 {
			e.t.Errorf("relaunches after one expired = %v, want the 4 others", got)
		}
		// A cursor of the owner's listing is not one of this listing.
		page, err := e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner, Limit: 1})
		if err != nil || page.Next == "" {
			e.t.Fatalf("ListTasks = %+v, %v", page, err)
		}
		_, err = e.store.ListTasks(e.ctx, task.ListQuery{Owner: owner, RelaunchOf: orig.ID, Cursor: page.Next})
		wantCode(e.t, err, task.CodeInvalidQuery, "a relaunch listing with an owner listing's cursor")
	})
}

func newestFirst(a, b *task.Task) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// listAll pages through a listing and returns the ids of every task, checking on the way that
// no page is longer than the limit, that only the last page is short, and that no task comes
// twice.
func (e *env) listAll(q task.ListQuery) []string {
	e.t.Helper()
	limit := task.PageSize(q.Limit)
	var ids []string
	seen := map[string]bool{}
	for {
		page, err := e.store.ListTasks(e.ctx, q)
		if err != nil {
			e.t.Fatalf("ListTasks(%+v) = %v", q, err)
		}
		if len(page.Tasks) > limit || (page.Next != "" && len(page.Tasks) < limit) {
			e.t.Fatalf("ListTasks(%+v) returned %d tasks with next %q; want full pages of %d", q, len(page.Tasks), page.Next, limit)
		}
		for _, tk := range page.Tasks {
			if seen[tk.ID] {
				e.t.Fatalf("ListTasks(%+v) returned %s a second time", q, tk.ID)
			}
			seen[tk.ID] = true
			ids = append(ids, tk.ID)
		}
		if page.Next == "" {
			return ids
		}
		q.Cursor = page.Next
	}
}
