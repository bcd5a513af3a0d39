package dynamo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/task/storetest"
)

// newTask builds a pending task the way the engine's Submit does.
func newTask(id, owner string, devices []string, now time.Time) *task.Task {
	return &task.Task{ID: id, Owner: owner, Status: task.StatusPending, Version: 1, CreatedAt: now, UpdatedAt: now,
		CurrentStep: "queued",
		Request: task.Request{DeviceIDs: devices, ScriptURL: "s3://scripts/patch.sh", Args: []string{"--dry-run"},
			TimeoutSeconds: 600, MaxConcurrency: "10%", MaxErrors: "100%"},
		Counts: task.Counts{Total: len(devices), Pending: len(devices)}}
}

// running stores a new task and moves it to running.
func running(t *testing.T, s *Store, id string, devices []string, now time.Time) *task.Task {
	t.Helper()
	ctx := t.Context()
	tk, _, err := s.CreateTask(ctx, newTask(id, "owner", devices, now), nil)
	if err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	return storetest.MoveTo(t, s, tk, task.StatusRunning, now, time.Time{})
}

func managedNodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("i-%017x", 0x10000+i*7919)
	}
	return out
}

// TestRequestCounts pins the number of DynamoDB requests of the calls on the hot paths: a
// submit and a status read are one request each, and a report of 100 devices is a handful,
// not one write per device.
func TestRequestCounts(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()

	var actions int
	tt.faults.add(&fault{op: "TransactWriteItems", n: 1, before: func(_ context.Context, p any) {
		actions = len(p.(*dynamodb.TransactWriteItemsInput).TransactItems)
	}})
	tk := newTask("counted", "owner", managedNodes(task.MaxDevices), clk.Now())
	idem := &task.IdempotencyRecord{Owner: "owner", Key: "k", TaskID: tk.ID, RequestHash: "h", ExpiresAt: clk.Now().Add(24 * time.Hour)}

	steps := []struct {
		name string
		call func() error
		want map[string]int
	}{
		{"CreateTask of 10,000 devices with a key", func() error {
			_, _, err := s.CreateTask(ctx, tk, idem)
			return err
		}, map[string]int{"TransactWriteItems": 1}},
		{"GetTask", func() error {
			_, err := s.GetTask(ctx, tk.ID)
			return err
		}, map[string]int{"GetItem": 1}},
		{"Transition", func() error {
			tr, err := storetest.Move(tk, task.StatusRunning, clk.Now(), time.Time{})
			if err == nil {
				_, err = s.Transition(ctx, tr)
			}
			return err
		}, map[string]int{"UpdateItem": 1}},
		{"ApplyDeviceUpdates of 100 devices", func() error {
			var ups []task.DeviceUpdate
			for _, id := range tk.Request.DeviceIDs[:100] {
				ups = append(ups, task.DeviceUpdate{DeviceID: id, Status: task.DeviceSucceeded, At: clk.Now(), ExitCode: new(0)})
			}
			_, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, ups)
			if err == nil && n != 100 {
				err = fmt.Errorf("applied %d of 100", n)
			}
			return err
		}, map[string]int{"BatchGetItem": 2, "TransactWriteItems": 2, "GetItem": 1}},
		{"ApplyDeviceUpdates of 3 devices", func() error {
			var ups []task.DeviceUpdate
			for _, id := range tk.Request.DeviceIDs[200:203] {
				ups = append(ups, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: clk.Now()})
			}
			_, _, err := s.ApplyDeviceUpdates(ctx, tk.ID, ups)
			return err
		}, map[string]int{"BatchGetItem": 1, "TransactWriteItems": 1, "GetItem": 1}},
		{"GetDevice", func() error {
			_, err := s.GetDevice(ctx, tk.ID, tk.Request.DeviceIDs[0])
			return err
		}, map[string]int{"BatchGetItem": 1}},
		{"ListDevices, a page of 50", func() error {
			_, err := s.ListDevices(ctx, tk.ID, task.DeviceQuery{})
			return err
		}, map[string]int{"GetItem": 1, "BatchGetItem": 1}},
		{"ListTasks", func() error {
			_, err := s.ListTasks(ctx, task.ListQuery{Owner: "owner"})
			return err
		}, map[string]int{"Query": 1}},
	}
	for _, st := range steps {
		tt.count.Reset()
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		t.Logf("%-40s %d requests: %s", st.name, tt.count.Total(), tt.count)
		total := 0
		for op, n := range st.want {
			total += n
			if got := tt.count.Count(op); got != n {
				t.Errorf("%s: %d %s requests, want %d", st.name, got, op, n)
			}
		}
		if tt.count.Total() != total {
			t.Errorf("%s: %d requests (%s), want %d", st.name, tt.count.Total(), tt.count, total)
		}
	}
	if actions != 2 {
		t.Errorf("the 10,000-device submit was a transaction of %d actions, want 2 (task and key)", actions)
	}
}

// TestOversizedDeviceList stores 10,000 random 128-character ids, which no compression fits in
// one item, and checks that the list is split over parts in the same transaction and read back
// whole everywhere, and that DeleteExpired takes the parts too.
func TestOversizedDeviceList(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	devices := randomIDs(t, task.MaxDevices, 128)
	tt.count.Reset()
	tk := running(t, s, "big", devices, clk.Now())
	if n := tt.count.Count("TransactWriteItems"); n != 1 {
		t.Errorf("the submit took %d transactions, want 1", n)
	}
	got, err := s.GetTask(ctx, tk.ID)
	if err != nil || !slices.Equal(got.Request.DeviceIDs, devices) {
		t.Fatalf("GetTask = %v; device list intact: %v", err, err == nil && slices.Equal(got.Request.DeviceIDs, devices))
	}
	if _, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, []task.DeviceUpdate{{DeviceID: devices[9999], Status: task.DeviceSucceeded, At: clk.Now()}}); err != nil || n != 1 {
		t.Fatalf("ApplyDeviceUpdates = %d, %v", n, err)
	}
	if d, err := s.GetDevice(ctx, tk.ID, devices[9999]); err != nil || d.Status != task.DeviceSucceeded {
		t.Errorf("GetDevice = %+v, %v", d, err)
	}
	page, err := s.ListTasks(ctx, task.ListQuery{Owner: "owner"})
	if err != nil || len(page.Tasks) != 1 || !slices.Equal(page.Tasks[0].Request.DeviceIDs, devices) {
		t.Errorf("ListTasks = %v; want the task with its whole device list", err)
	}
	if got, err = s.GetTask(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	storetest.MoveTo(t, s, got, task.StatusFailed, clk.Now(), clk.Now().Add(time.Hour))
	if n, err := s.DeleteExpired(ctx, clk.Now().Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v", n, err)
	}
	if left := scanAll(t, tt); len(left) != 0 {
		t.Errorf("DeleteExpired left %d items, e.g. %v", len(left), keyOf(left[0]))
	}
}

func scanAll(t *testing.T, tt *testTable) []map[string]types.AttributeValue {
	t.Helper()
	out, err := tt.client.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(tt.name)})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out.Items
}

func TestCreateTaskIdempotencyEdges(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	idem := func(key, hash string) *task.IdempotencyRecord {
		return &task.IdempotencyRecord{Owner: "owner", Key: key, RequestHash: hash, ExpiresAt: clk.Now().Add(time.Hour)}
	}

	// A record whose task is gone (TTL deleted it before the key) frees the key for the same
	// body, as in the embedded store; another body is still refused.
	rec, err := attributevalue.MarshalMap(idempotencyItem{PK: idemPK("owner", "orphan"), SK: skIdempotency, Type: kindIdempotency,
		Owner: "owner", Key: "orphan", TaskID: "deleted", RequestHash: "h", Exp: clk.Now().Add(time.Hour).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tt.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(tt.name), Item: rec}); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.CreateTask(ctx, newTask("t0", "owner", ids("d", 2), clk.Now()), idem("orphan", "other"))
	if !task.IsCode(err, task.CodeIdempotencyMismatch) {
		t.Errorf("CreateTask with a dead task's key and another body = %v, want idempotency_mismatch", err)
	}
	got, created, err := s.CreateTask(ctx, newTask("t1", "owner", ids("d", 2), clk.Now()), idem("orphan", "h"))
	if err != nil || !created || got.ID != "t1" {
		t.Errorf("CreateTask with a deleted task's key = %v, %v, %v; want t1 created", got, created, err)
	}
	if got, created, err := s.CreateTask(ctx, newTask("t1-again", "owner", ids("d", 2), clk.Now()), idem("orphan", "h")); err != nil || created || got.ID != "t1" {
		t.Errorf("replay after the takeover = %v, %v, %v; want t1", got, created, err)
	}

	// The same for a task that expired (retention shorter than the key's) but is not deleted
	// yet; two submits race for the key and both end with the same new task.
	short := newTask("short-lived", "owner", ids("d", 1), clk.Now())
	if _, _, err := s.CreateTask(ctx, short, idem("expiring", "h")); err != nil {
		t.Fatal(err)
	}
	storetest.MoveTo(t, s, short, task.StatusCancelled, clk.Now(), clk.Now().Add(time.Minute))
	clk.Advance(2 * time.Minute)
	var wg sync.WaitGroup
	results := make([]*task.Task, 2)
	for i := range results {
		wg.Go(func() {
			got, _, err := s.CreateTask(ctx, newTask(fmt.Sprintf("racer-%d", i), "owner", ids("d", 1), clk.Now()), idem("expiring", "h"))
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
				return
			}
			results[i] = got
		})
	}
	wg.Wait()
	if results[0] == nil || results[1] == nil || results[0].ID != results[1].ID {
		t.Errorf("the racers for an expired task's key got %v and %v, want the same new task", results[0], results[1])
	}

	// A transaction conflict is a concurrent submit with the same key.
	tt.faults.add(&fault{op: "TransactWriteItems", n: 1, err: cancel(reasonNone, reasonConflict)})
	_, _, err = s.CreateTask(ctx, newTask("t3", "owner", ids("d", 2), clk.Now()), idem("racing", "h"))
	if !task.IsCode(err, task.CodeInProgress) {
		t.Errorf("CreateTask in a transaction conflict = %v, want in_progress", err)
	}
	// Throttling is retried, and the submit goes through.
	tt.faults.add(&fault{op: "TransactWriteItems", n: 2, err: cancel(reasonThrottled, reasonNone)})
	tt.faults.add(&fault{op: "TransactWriteItems", n: 2, err: throughputExceeded})
	got, created, err = s.CreateTask(ctx, newTask("t3", "owner", ids("d", 2), clk.Now()), idem("racing", "h"))
	if err != nil || !created || got.ID != "t3" {
		t.Errorf("CreateTask after throttling = %v, %v, %v; want t3 created", got, created, err)
	}
	if n := tt.faults.hit("TransactWriteItems"); n != 5 {
		t.Errorf("%d injected failures reached the store, want 5", n)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	tk := running(t, s, "with-commands", ids("d", 120), clk.Now())
	other := running(t, s, "other", ids("d", 1), clk.Now())

	if cmds, err := s.Commands(ctx, tk.ID); err != nil || len(cmds) != 0 {
		t.Errorf("Commands before any = %v, %v; want none", cmds, err)
	}
	for batch, cmd := range []string{"cmd-0", "cmd-1", "cmd-2"} {
		if err := s.RecordCommand(ctx, tk.ID, batch, cmd); err != nil {
			t.Fatalf("RecordCommand(%d, %s) = %v", batch, cmd, err)
		}
	}
	for _, c := range []struct {
		name   string
		taskID string
		batch  int
		cmd    string
		want   task.Code
	}{
		{"the same again", tk.ID, 1, "cmd-1", ""},
		{"another command for a recorded batch", tk.ID, 1, "cmd-9", task.CodeConflict},
		{"a recorded command for another batch", tk.ID, 7, "cmd-2", task.CodeConflict},
		{"a recorded command for another task", other.ID, 0, "cmd-0", task.CodeConflict},
		{"an unknown task", "missing", 0, "cmd-x", task.CodeNotFound},
		{"no command id", tk.ID, 3, "", task.CodeInvalid},
	} {
		if err := s.RecordCommand(ctx, c.taskID, c.batch, c.cmd); task.ErrorCode(err) != c.want {
			t.Errorf("RecordCommand %s = %v, want code %q", c.name, err, c.want)
		}
	}
	want := map[int]string{0: "cmd-0", 1: "cmd-1", 2: "cmd-2"}
	cmds, err := s.Commands(ctx, tk.ID)
	if err != nil || fmt.Sprint(cmds) != fmt.Sprint(want) {
		t.Errorf("Commands = %v, %v; want %v", cmds, err, want)
	}
	for batch, cmd := range want {
		if id, err := s.TaskForCommand(ctx, cmd); err != nil || id != tk.ID {
			t.Errorf("TaskForCommand(%s) of batch %d = %q, %v; want %s", cmd, batch, id, err, tk.ID)
		}
	}
	if _, err := s.TaskForCommand(ctx, "cmd-9"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("TaskForCommand of an unrecorded command = %v, want not_found", err)
	}
	if _, err := s.Commands(ctx, "missing"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("Commands of an unknown task = %v, want not_found", err)
	}
}

// TestFinishedTaskItemsExpireTogether checks that a terminal transition gives the task's
// devices, commands and command mappings the task's TTL, that reads treat them as gone once it
// passes, and that DeleteExpired removes every one of them.
func TestFinishedTaskItemsExpireTogether(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	tk := running(t, s, "finishing", ids("d", 30), clk.Now())
	if err := s.RecordCommand(ctx, tk.ID, 0, "cmd-finishing"); err != nil {
		t.Fatal(err)
	}
	var ups []task.DeviceUpdate
	for _, id := range tk.Request.DeviceIDs[:20] {
		ups = append(ups, task.DeviceUpdate{DeviceID: id, Status: task.DeviceSucceeded, At: clk.Now()})
	}
	tk, _, err := s.ApplyDeviceUpdates(ctx, tk.ID, ups)
	if err != nil {
		t.Fatal(err)
	}
	keep := running(t, s, "keeps-running", ids("d", 2), clk.Now())
	if _, _, err := s.ApplyDeviceUpdates(ctx, keep.ID, []task.DeviceUpdate{{DeviceID: "d-00000", Status: task.DeviceRunning}}); err != nil {
		t.Fatal(err)
	}

	expires := clk.Now().Add(90*time.Minute + 500*time.Millisecond)
	storetest.MoveTo(t, s, tk, task.StatusCompleted, clk.Now(), expires)
	wantTTL := strconv.FormatInt(expires.Unix()+1, 10)
	stamped := 0
	for _, item := range scanAll(t, tt) {
		k := keyOf(item)
		belongs := k.pk == taskPK(tk.ID) || k.pk == commandTaskPK("cmd-finishing")
		ttl, _ := item[attrTTL].(*types.AttributeValueMemberN)
		switch {
		case belongs && (ttl == nil || ttl.Value != wantTTL):
			t.Errorf("item %v of the finished task has ttl %v, want %s", k, item[attrTTL], wantTTL)
		case belongs:
			stamped++
		case ttl != nil:
			t.Errorf("item %v of a running task has a ttl", k)
		}
	}
	if want := 1 + 20 + 1 + 1; stamped != want { // task, devices, command, mapping
		t.Errorf("%d items carry the task's ttl, want %d", stamped, want)
	}

	clk.Advance(2 * time.Hour)
	if _, err := s.TaskForCommand(ctx, "cmd-finishing"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("TaskForCommand after expiry = %v, want not_found", err)
	}
	if _, err := s.Commands(ctx, tk.ID); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("Commands after expiry = %v, want not_found", err)
	}
	if n, err := s.DeleteExpired(ctx, clk.Now()); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	for _, item := range scanAll(t, tt) {
		if k := keyOf(item); k.pk != taskPK(keep.ID) {
			t.Errorf("DeleteExpired left %v", k)
		}
	}
	if _, err := s.GetDevice(ctx, keep.ID, "d-00000"); err != nil {
		t.Errorf("the running task's device went too: %v", err)
	}
}

func TestEnsureTableIsIdempotent(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	ctx := t.Context()
	if err := EnsureTable(ctx, tt.client, tt.name); err != nil {
		t.Fatalf("EnsureTable on an existing table = %v", err)
	}
	ttl, err := tt.client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(tt.name)})
	if err != nil || ttl.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusEnabled ||
		aws.ToString(ttl.TimeToLiveDescription.AttributeName) != TTLAttribute {
		t.Errorf("time to live = %+v, %v; want enabled on %s", ttl.TimeToLiveDescription, err, TTLAttribute)
	}
	desc, err := tt.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(tt.name)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range desc.Table.GlobalSecondaryIndexes {
		names = append(names, aws.ToString(g.IndexName))
	}
	if slices.Sort(names); !slices.Equal(names, []string{IndexByOwner, IndexOpen}) {
		t.Errorf("indexes = %v, want %s and %s", names, IndexByOwner, IndexOpen)
	}
}

func TestDeviceItemsOutlastTheirTaskWithoutRestamping(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clk := newClock()
	tt := newTable(t)
	s := New(tt.client, tt.name, Options{Now: clk.Now, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond,
		Retention: 24 * time.Hour})
	tk := running(t, s, "bounded-devices", ids("d", 60), clk.Now())
	var done []task.DeviceUpdate
	for _, id := range tk.Request.DeviceIDs {
		done = append(done, task.DeviceUpdate{DeviceID: id, Status: task.DeviceSucceeded, At: clk.Now()})
	}
	if _, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, done); err != nil || n != 60 {
		t.Fatalf("ApplyDeviceUpdates = %d, %v", n, err)
	}
	tk, err := s.GetTask(ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	tt.count.Reset()
	end := clk.Now()
	storetest.MoveTo(t, s, tk, task.StatusCompleted, end, end.Add(24*time.Hour))
	if n := tt.count.Count("BatchWriteItem"); n != 0 {
		t.Errorf("finishing rewrote device items in %d BatchWriteItem calls, want none: they were written with a bound", n)
	}
	// Every device item expires no sooner than its task, so TTL never removes a device first.
	items, err := s.queryAll(ctx, s.partitionQuery(tk.ID, ""))
	if err != nil {
		t.Fatal(err)
	}
	var taskExp int64
	for _, it := range items {
		if itemString(it, attrSK) == skTask {
			taskExp = itemExp(it)
		}
	}
	devices := 0
	for _, it := range items {
		if itemString(it, attrType) != kindDevice {
			continue
		}
		devices++
		if got := itemExp(it); got < taskExp {
			t.Errorf("device %s expires at %d, before its task at %d", itemString(it, "deviceId"), got, taskExp)
		}
	}
	if devices != 60 || taskExp == 0 {
		t.Fatalf("found %d device items and task expiry %d", devices, taskExp)
	}
}
