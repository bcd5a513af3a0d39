package localstore

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/task/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, now func() time.Time) task.Store {
		return open(t, filepath.Join(t.TempDir(), "fleetrun.db"), now)
	})
}

func open(t *testing.T, path string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(path, Options{Now: now})
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newTask builds a pending task like the engine's Submit does.
func newTask(id, owner string, created time.Time, devices ...string) *task.Task {
	return &task.Task{ID: id, Owner: owner, Status: task.StatusPending, Version: 1, CreatedAt: created,
		UpdatedAt: created, CurrentStep: "queued",
		Request: task.Request{DeviceIDs: devices, ScriptURL: "hello.sh", Args: []string{}, TimeoutSeconds: 60,
			MaxConcurrency: "50", MaxErrors: "100%"},
		Counts: task.Counts{Total: len(devices), Pending: len(devices)}}
}

func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "fleetrun.db")
	s, err := Open(path, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	base := clock.Now()
	idem := &task.IdempotencyRecord{Owner: "alice", Key: "k1", TaskID: "t-running", RequestHash: "h1", ExpiresAt: base.Add(24 * time.Hour)}
	// Created out of order, so that Active must sort by creation time, not by id or write order.
	tasks := []*task.Task{
		newTask("t-running", "alice", base.Add(2*time.Second), "a", "b", "c"),
		newTask("t-pending", "alice", base.Add(3*time.Second), "d"),
		newTask("t-done", "alice", base.Add(1*time.Second), "e"),
		newTask("t-cancelling", "bob", base.Add(4*time.Second), "f", "g"),
		newTask("t-old", "bob", base, "h"),
	}
	for _, tk := range tasks {
		rec := (*task.IdempotencyRecord)(nil)
		if tk.ID == idem.TaskID {
			rec = idem
		}
		if _, _, err := s.CreateTask(ctx, tk, rec); err != nil {
			t.Fatalf("CreateTask(%s) = %v", tk.ID, err)
		}
	}
	move := func(id string, path ...task.Status) {
		t.Helper()
		for _, to := range path {
			cur, err := s.GetTask(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			storetest.MoveTo(t, s, cur, to, clock.Now(), base.Add(time.Hour))
		}
	}
	move("t-running", task.StatusRunning)
	move("t-done", task.StatusRunning, task.StatusCompleted)
	move("t-cancelling", task.StatusRunning, task.StatusCancelling)
	update := task.DeviceUpdate{DeviceID: "b", Status: task.DeviceSucceeded, At: base, ExitCode: new(0), Stdout: "hi", Ref: "pid-1"}
	if _, n, err := s.ApplyDeviceUpdates(ctx, "t-running", []task.DeviceUpdate{update}); err != nil || n != 1 {
		t.Fatalf("ApplyDeviceUpdates = %d, %v", n, err)
	}
	before := map[string]*task.Task{}
	for _, tk := range tasks {
		if before[tk.ID], err = s.GetTask(ctx, tk.ID); err != nil {
			t.Fatal(err)
		}
	}
	beforeDevice, err := s.GetDevice(ctx, "t-running", "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}

	s = open(t, path, clock.Now)
	for id, want := range before {
		got, err := s.GetTask(ctx, id)
		if err != nil || got.Version != want.Version || got.Status != want.Status || got.Counts != want.Counts ||
			!slices.Equal(got.Request.DeviceIDs, want.Request.DeviceIDs) {
			t.Errorf("after reopening, GetTask(%s) = %+v, %v; want %+v", id, got, err, want)
		}
	}
	if d, err := s.GetDevice(ctx, "t-running", "b"); err != nil || d.Status != task.DeviceSucceeded ||
		d.Stdout != beforeDevice.Stdout || d.Ref != "pid-1" || d.ExitCode == nil || *d.ExitCode != 0 {
		t.Errorf("after reopening, device b = %+v, %v; want %+v", d, err, beforeDevice)
	}
	replay, created, err := s.CreateTask(ctx, newTask("t-replay", "alice", clock.Now(), "x"), &task.IdempotencyRecord{
		Owner: "alice", Key: "k1", RequestHash: "h1", ExpiresAt: clock.Now().Add(time.Hour)})
	if err != nil || created || replay.ID != "t-running" {
		t.Errorf("after reopening, a replay = %v, created %v, %v; want t-running", replay, created, err)
	}

	active, err := s.Active(ctx)
	if err != nil {
		t.Fatalf("Active = %v", err)
	}
	got := make([]string, len(active))
	for i, tk := range active {
		got[i] = tk.ID
	}
	if want := []string{"t-old", "t-running", "t-pending", "t-cancelling"}; !slices.Equal(got, want) {
		t.Errorf("Active = %v, want %v", got, want)
	}
	if len(active) > 1 && !slices.Equal(active[1].Request.DeviceIDs, []string{"a", "b", "c"}) {
		t.Errorf("Active returned %s without its device ids: %v", active[1].ID, active[1].Request.DeviceIDs)
	}
}

func TestOpenRefusesAFileInUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fleetrun.db")
	open(t, path, nil)
	if s, err := Open(path, Options{}); err == nil {
		s.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
}

func TestOpenRefusesAnotherLayout(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fleetrun.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte("99"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a file of layout version 99")
	}
}

// TestOpenReadsAVersionOneFile opens a file of the first layout, whose requests have no notify
// or targets, whose devices have no cancelRequestedAt and which has no outbox or relaunches:
// it is read as it is, and marked with the current version.
func TestOpenReadsAVersionOneFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fleetrun.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := `{"seq":1,"task":{"id":"t1","owner":"alice","status":"pending","version":1,"createdAt":"2030-05-06T07:08:09Z",` +
		`"updatedAt":"2030-05-06T07:08:09Z","request":{"deviceIds":null,"scriptUrl":"hello.sh","args":[],"timeoutSeconds":60,` +
		`"maxConcurrency":"1","maxErrors":"0"},"counts":{"total":1,"pending":1,"running":0,"succeeded":0,"failed":0,` +
		`"timedOut":0,"cancelled":0,"undeliverable":0},"currentStep":"queued"}}`
	err = db.Update(func(tx *bolt.Tx) error {
		for name, kv := range map[string][2]string{"meta": {"schema", "1"}, "tasks": {"t1", old}, "deviceids": {"t1", `["d1"]`}} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(kv[0]), []byte(kv[1])); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of a version 1 file: %v", err)
	}
	defer s.Close()
	got, err := s.GetTask(t.Context(), "t1")
	if err != nil || got.Request.Notify != nil || got.Request.ScriptURL != "hello.sh" {
		t.Errorf("the version 1 task reads as %+v, %v", got, err)
	}
	if page, err := s.ListTasks(t.Context(), task.ListQuery{Owner: "alice", RelaunchOf: "t1"}); err != nil || len(page.Tasks) != 0 {
		t.Errorf("the relaunches of a version 1 task: %+v, %v; want none", page, err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(bucketMeta).Get([]byte("schema"))); v != schemaVersion {
			t.Errorf("the file is marked version %s after Open, want %s", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	oldDevice := `{"taskId":"t1","id":"web-1","status":"running","exitCode":null,"stdout":"","stderr":"","stdoutTruncated":false,"stderrTruncated":false,"ref":"pgid:7"}`
	d, err := decodeDevice([]byte(oldDevice))
	if err != nil || d.Status != task.DeviceRunning || d.Ref != "pgid:7" || d.CancelRequestedAt != nil {
		t.Errorf("a version 1 device record reads as %+v, %v", d, err)
	}
}

// TestDeleteExpiredLeavesNothingBehind looks inside the file: a swept task must leave no record,
// device, index entry, delivery record or idempotency record behind, not merely be hidden from
// reads.
func TestDeleteExpiredLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC))
	s := open(t, filepath.Join(t.TempDir(), "fleetrun.db"), clock.Now)
	base := clock.Now()
	for i := range 3*sweepChunk + 5 { // several transactions' worth
		id := fmt.Sprintf("t-%03d", i)
		tk := newTask(id, "alice", base.Add(time.Duration(i)), "d1", "d2")
		idem := &task.IdempotencyRecord{Owner: "alice", Key: id, RequestHash: "h", ExpiresAt: base.Add(time.Minute)}
		if _, _, err := s.CreateTask(ctx, tk, idem); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ApplyDeviceUpdates(ctx, id, []task.DeviceUpdate{{DeviceID: "d1", Status: task.DeviceCancelled, At: base}}); err != nil {
			t.Fatal(err)
		}
		cur, err := s.GetTask(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		storetest.MoveTo(t, s, cur, task.StatusCancelled, base, base.Add(time.Hour))
		if err := s.RecordDelivery(ctx, task.Delivery{TaskID: id, EventID: id + "_finished", Type: task.WebhookTaskFinished,
			EventAt: base, Attempt: 1, At: base, StatusCode: 204, Outcome: task.DeliveryDelivered}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpired(ctx, base.Add(2*time.Hour))
	if err != nil || n != 3*sweepChunk+5 {
		t.Fatalf("DeleteExpired = %d, %v; want %d", n, err, 3*sweepChunk+5)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketTasks, bucketDeviceIDs, bucketDevices, bucketOwners, bucketActive,
			bucketExpiry, bucketIdem, bucketIdemExp, bucketDelivery} {
			if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
				t.Errorf("bucket %s still holds %q after the sweep", name, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestListTasksEndsOnAFullLastPage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC))
	s := open(t, filepath.Join(t.TempDir(), "fleetrun.db"), clock.Now)
	for i := range 4 {
		tk := newTask("t"+string(rune('0'+i)), "alice", clock.Now().Add(time.Duration(i)*time.Second), "d", "e")
		if _, _, err := s.CreateTask(ctx, tk, nil); err != nil {
			t.Fatal(err)
		}
	}
	first, err := s.ListTasks(ctx, task.ListQuery{Owner: "alice", Limit: 2})
	if err != nil || len(first.Tasks) != 2 || first.Next == "" {
		t.Fatalf("first page = %+v, %v", first, err)
	}
	second, err := s.ListTasks(ctx, task.ListQuery{Owner: "alice", Limit: 2, Cursor: first.Next})
	if err != nil || len(second.Tasks) != 2 || second.Next != "" {
		t.Errorf("last page = %d tasks, next %q, %v; want 2 tasks and no cursor", len(second.Tasks), second.Next, err)
	}
	// A cursor of one owner's listing is refused for another's.
	_, err = s.ListTasks(ctx, task.ListQuery{Owner: "bob", Cursor: first.Next})
	if !task.IsCode(err, task.CodeInvalidQuery) {
		t.Errorf("another owner's cursor: err = %v, want invalid", err)
	}
	// Devices end on a full last page too, and a device cursor is no task cursor.
	devs, err := s.ListDevices(ctx, "t0", task.DeviceQuery{Limit: 1})
	if err != nil || devs.Next == "" {
		t.Fatalf("first device page = %+v, %v; want a cursor", devs, err)
	}
	last, err := s.ListDevices(ctx, "t0", task.DeviceQuery{Limit: 1, Cursor: devs.Next})
	if err != nil || len(last.Devices) != 1 || last.Next != "" {
		t.Errorf("last device page = %+v, %v; want one device and no cursor", last, err)
	}
	_, err = s.ListTasks(ctx, task.ListQuery{Owner: "alice", Cursor: devs.Next})
	if !task.IsCode(err, task.CodeInvalidQuery) {
		t.Errorf("a device cursor given to ListTasks: err = %v, want invalid", err)
	}
}

// TestApplyRechecksInTheWriteTransaction drives the write path directly, as a writer that lost
// a race to another one would reach it after the read-only check: duplicates and updates to a
// task that has just ended must still change nothing.
func TestApplyRechecksInTheWriteTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC))
	s := open(t, filepath.Join(t.TempDir(), "fleetrun.db"), clock.Now)
	if _, _, err := s.CreateTask(ctx, newTask("t1", "alice", clock.Now(), "a", "b"), nil); err != nil {
		t.Fatal(err)
	}
	done := task.DeviceUpdate{DeviceID: "a", Status: task.DeviceSucceeded, At: clock.Now()}
	first, n, err := s.apply("t1", []task.DeviceUpdate{done}, clock.Now())
	if err != nil || n != 1 || first.Version != 2 {
		t.Fatalf("first apply = version %v, %d, %v; want version 2, 1 applied", first, n, err)
	}
	again, n, err := s.apply("t1", []task.DeviceUpdate{done, {DeviceID: "a", Status: task.DeviceRunning}}, clock.Now())
	if err != nil || n != 0 || again.Version != first.Version || again.Counts != first.Counts {
		t.Errorf("duplicate apply = %+v, %d, %v; want nothing applied and version %d", again, n, err, first.Version)
	}
	storetest.MoveTo(t, s, first, task.StatusCancelled, clock.Now(), time.Time{})
	ended, n, err := s.apply("t1", []task.DeviceUpdate{{DeviceID: "b", Status: task.DeviceSucceeded}}, clock.Now())
	if err != nil || n != 0 || ended.Version != 3 || ended.Counts.Pending != 0 || ended.Counts.Cancelled != 1 {
		t.Errorf("apply to a cancelled task = %+v, %d, %v; want nothing applied at version 3", ended, n, err)
	}
}

// A listing filtered by status passes over every task of the owner: each record is decoded once
// per version and kept, and a record that changed is never listed as it was.
func TestListingDecodesEachVersionOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC))
	s := open(t, filepath.Join(t.TempDir(), "fleetrun.db"), clock.Now)
	var tasks []*task.Task
	for i := range 20 {
		tk := newTask(fmt.Sprintf("t%02d", i), "alice", clock.Now().Add(time.Duration(i)*time.Second), "d")
		if _, _, err := s.CreateTask(ctx, tk, nil); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, tk)
	}
	list := func(status task.Status) []*task.Task {
		t.Helper()
		page, err := s.ListTasks(ctx, task.ListQuery{Owner: "alice", Status: status, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return page.Tasks
	}
	kept := func(id string) *record {
		s.records.mu.Lock()
		defer s.records.mu.Unlock()
		return s.records.records[id].rec
	}
	if got := list(task.StatusPending); len(got) != 20 {
		t.Fatalf("pending tasks = %d, want 20", len(got))
	}
	first := kept("t00")
	if first == nil {
		t.Fatal("a listed record was not kept")
	}
	if got := list(task.StatusRunning); len(got) != 0 {
		t.Fatalf("running tasks = %d, want none", len(got))
	}
	if kept("t00") != first {
		t.Error("an unchanged record was decoded again by the next listing")
	}

	tr, err := task.Dispatch(tasks[0], clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, tr); err != nil {
		t.Fatal(err)
	}
	running := list(task.StatusRunning)
	if len(running) != 1 || running[0].ID != "t00" || running[0].Version != 2 {
		t.Fatalf("running tasks after a dispatch = %+v, want t00 at version 2", running)
	}
	for _, tk := range list(task.StatusPending) {
		if tk.ID == "t00" {
			t.Error("the dispatched task is still listed as pending")
		}
	}
}

// A listing by an unfinished status reads the index of unfinished tasks, which holds every
// owner's: it still lists the owner's tasks alone, newest first, page by page, and refuses
// another owner's cursor.
func TestListingUnfinishedTasksPagesThroughTheOwnersOwn(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC))
	s := open(t, filepath.Join(t.TempDir(), "fleetrun.db"), clock.Now)
	var want []string
	for i := range 9 {
		owner := []string{"alice", "bob", "alice"}[i%3]
		tk := newTask(fmt.Sprintf("t%d", i), owner, clock.Now().Add(time.Duration(i)*time.Second), "d")
		if _, _, err := s.CreateTask(ctx, tk, nil); err != nil {
			t.Fatal(err)
		}
		if i == 4 { // alice's t4 starts: it is no longer pending
			tr, err := task.Dispatch(tk, clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Transition(ctx, tr); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if owner == "alice" {
			want = append([]string{tk.ID}, want...)
		}
	}
	var got []string
	q := task.ListQuery{Owner: "alice", Status: task.StatusPending, Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("the listing does not end")
		}
		page, err := s.ListTasks(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range page.Tasks {
			got = append(got, tk.ID)
		}
		if page.Next == "" {
			break
		}
		if _, err := s.ListTasks(ctx, task.ListQuery{Owner: "bob", Status: task.StatusPending, Cursor: page.Next}); !task.IsCode(err, task.CodeInvalidQuery) {
			t.Errorf("alice's cursor given to bob's listing: err = %v, want invalid", err)
		}
		q.Cursor = page.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("alice's pending tasks = %v, want %v", got, want)
	}
}
