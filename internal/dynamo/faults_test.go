package dynamo

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/awsretry"
	"github.com/fleetrun/fleetrun/internal/task"
	"github.com/fleetrun/fleetrun/internal/task/storetest"
)

// cancel returns a TransactionCanceledException with one reason per action, as DynamoDB sends.
func cancel(codes ...string) func() error {
	return func() error {
		reasons := make([]types.CancellationReason, len(codes))
		for i, c := range codes {
			reasons[i].Code = aws.String(c)
		}
		return &types.TransactionCanceledException{Message: aws.String("injected"), CancellationReasons: reasons}
	}
}

func throughputExceeded() error {
	return &types.ProvisionedThroughputExceededException{Message: aws.String("injected")}
}

func throttlingException() error {
	return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "injected"}
}

// TestApplyDeviceUpdatesSurvivesFaults injects each kind of failure DynamoDB answers under
// load or contention into a report of five devices, and checks that the store retries and
// applies every update exactly once.
func TestApplyDeviceUpdatesSurvivesFaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		faults []*fault
	}{
		{"throttled reads", []*fault{{op: "BatchGetItem", n: 3, err: throughputExceeded}}},
		{"throttled transaction", []*fault{{op: "TransactWriteItems", n: 2, err: throttlingException}}},
		{"transaction cancelled for throttling", []*fault{{op: "TransactWriteItems", n: 2,
			err: cancel(reasonThrottled, reasonNone, reasonNone, reasonNone, reasonNone, reasonNone)}}},
		{"transaction conflicts", []*fault{{op: "TransactWriteItems", n: 3,
			err: cancel(reasonConflict, reasonNone, reasonNone, reasonNone, reasonNone, reasonNone)}}},
		{"a device condition fails", []*fault{{op: "TransactWriteItems", n: 1,
			err: cancel(reasonNone, reasonNone, reasonConditionFailed, reasonNone, reasonNone, reasonNone)}}},
		{"everything at once", []*fault{
			{op: "BatchGetItem", n: 2, err: throttlingException},
			{op: "TransactWriteItems", n: 1, err: cancel(reasonNone, reasonConditionFailed, reasonNone, reasonNone, reasonNone, reasonNone)},
			{op: "TransactWriteItems", n: 1, err: cancel(reasonConflict, reasonNone, reasonNone, reasonNone, reasonNone, reasonNone)},
			{op: "TransactWriteItems", n: 1, err: throughputExceeded},
			{op: "GetItem", n: 2, err: throughputExceeded}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tt := newTable(t)
			clk := newClock()
			s := tt.store(clk.Now)
			tk := running(t, s, "faulty", ids("d", 5), clk.Now())
			tt.count.Reset()
			injected := 0
			for _, f := range c.faults {
				injected += f.n
				tt.faults.add(f)
			}
			var ups []task.DeviceUpdate
			for _, id := range tk.Request.DeviceIDs {
				ups = append(ups, task.DeviceUpdate{DeviceID: id, Status: task.DeviceSucceeded, At: clk.Now(), ExitCode: new(0)})
			}
			got, n, err := s.ApplyDeviceUpdates(t.Context(), tk.ID, append(ups, ups...))
			if err != nil {
				t.Fatalf("ApplyDeviceUpdates = %v", err)
			}
			hits := 0
			for _, op := range []string{"GetItem", "BatchGetItem", "TransactWriteItems"} {
				hits += tt.faults.hit(op)
			}
			if hits != injected {
				t.Errorf("%d of %d injected failures reached the store", hits, injected)
			}
			want := task.Counts{Total: 5, Succeeded: 5}
			if n != 5 || got.Counts != want || got.Version != tk.Version+1 {
				t.Errorf("applied %d, counts %+v, version %d; want 5, %+v, %d", n, got.Counts, got.Version, want, tk.Version+1)
			}
			if tt.count.Count("TransactWriteItems") != 1 {
				t.Errorf("%d transactions reached DynamoDB, want 1", tt.count.Count("TransactWriteItems"))
			}
		})
	}
}

// TestRetriesAreBounded checks that a store facing endless throttling gives up with
// CodeUnavailable once the SDK's retryer has made its attempts, that endless transaction
// conflicts end after MaxAttempts rounds of re-planning, that nothing is written, and that the
// updates apply once when asked again after the storm.
func TestRetriesAreBounded(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := New(tt.client, tt.name, Options{Now: clk.Now, MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	ctx := t.Context()
	tk := running(t, s, "stormy", ids("d", 3), clk.Now())

	storm := &fault{op: "GetItem", n: 1000, err: throughputExceeded}
	tt.faults.add(storm)
	if _, err := s.GetTask(ctx, tk.ID); !task.IsCode(err, task.CodeUnavailable) {
		t.Errorf("GetTask in a storm = %v, want unavailable", err)
	}
	if n := tt.faults.hit("GetItem"); n != awsretry.DefaultMaxAttempts {
		t.Errorf("GetTask tried %d times, want the retryer's %d", n, awsretry.DefaultMaxAttempts)
	}
	storm.n = 0

	tt.faults.add(&fault{op: "TransactWriteItems", n: 1000, err: cancel(reasonConflict, reasonNone)})
	up := []task.DeviceUpdate{{DeviceID: "d-00001", Status: task.DeviceFailed, At: clk.Now(), ExitCode: new(2)}}
	_, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, up)
	if !task.IsCode(err, task.CodeUnavailable) || n != 0 {
		t.Errorf("ApplyDeviceUpdates in endless conflicts = %d, %v; want 0, unavailable", n, err)
	}
	if n := tt.faults.hit("TransactWriteItems"); n != 16 {
		t.Errorf("ApplyDeviceUpdates tried %d transactions, want 16 (4 × MaxAttempts rounds)", n)
	}
	tt.faults.mu.Lock()
	tt.faults.rules = nil
	tt.faults.mu.Unlock()
	if got, err := s.GetTask(ctx, tk.ID); err != nil || got.Version != tk.Version || got.Counts.Failed != 0 {
		t.Fatalf("after the storm: %+v, %v; want version %d, nothing applied", got, err, tk.Version)
	}
	got, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, up)
	if err != nil || n != 1 || got.Counts.Failed != 1 {
		t.Errorf("ApplyDeviceUpdates after the storm = %d, %+v, %v; want 1 applied", n, got, err)
	}
}

// TestApplyRacesAnotherWriter lets a second writer move a device between the store's read and
// its transaction, so that DynamoDB itself refuses the transaction on the device's condition,
// and checks that the store re-plans from a fresh read: the first writer's stale move is
// dropped, its other move is applied, and nothing is counted twice.
func TestApplyRacesAnotherWriter(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	tk := running(t, s, "raced", ids("d", 3), clk.Now())
	tt.count.Reset()
	var raceErr error
	tt.faults.add(&fault{op: "TransactWriteItems", n: 1, before: func(ctx context.Context, _ any) {
		_, _, raceErr = s.ApplyDeviceUpdates(ctx, tk.ID, []task.DeviceUpdate{
			{DeviceID: "d-00000", Status: task.DeviceSucceeded, At: clk.Now(), ExitCode: new(0), Stdout: "winner"}})
	}})
	got, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, []task.DeviceUpdate{
		{DeviceID: "d-00000", Status: task.DeviceRunning, At: clk.Now(), Ref: "late"},
		{DeviceID: "d-00001", Status: task.DeviceRunning, At: clk.Now(), Ref: "cmd"}})
	if raceErr != nil {
		t.Fatalf("the racing writer: %v", raceErr)
	}
	if err != nil || n != 1 {
		t.Fatalf("ApplyDeviceUpdates = %d, %v; want 1 applied", n, err)
	}
	if want := (task.Counts{Total: 3, Pending: 1, Running: 1, Succeeded: 1}); got.Counts != want || got.Version != tk.Version+2 {
		t.Errorf("counts %+v version %d, want %+v version %d", got.Counts, got.Version, want, tk.Version+2)
	}
	if n := tt.count.Count("TransactWriteItems"); n != 3 {
		t.Errorf("%d transactions, want 3 (the winner's, the refused one, the re-planned one)", n)
	}
	d, err := s.GetDevice(ctx, tk.ID, "d-00000")
	if err != nil || d.Status != task.DeviceSucceeded || d.Stdout != "winner" || d.Ref != "" {
		t.Errorf("the raced device = %+v, %v; want the winner's write untouched", d, err)
	}
}

// TestApplyStopsWhenTheTaskFinishes finishes the task between the store's read and its write:
// DynamoDB refuses the transaction on the task's condition and the store reports the finished
// task with nothing applied.
func TestApplyStopsWhenTheTaskFinishes(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	tk := running(t, s, "finished-under-us", ids("d", 2), clk.Now())
	tt.faults.add(&fault{op: "TransactWriteItems", n: 1, before: func(ctx context.Context, _ any) {
		tr, err := storetest.Move(tk, task.StatusFailed, clk.Now(), clk.Now().Add(time.Hour))
		if err == nil {
			_, err = s.Transition(ctx, tr)
		}
		if err != nil {
			t.Errorf("the finishing transition: %v", err)
		}
	}})
	got, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, []task.DeviceUpdate{{DeviceID: "d-00000", Status: task.DeviceRunning, At: clk.Now()}})
	if err != nil || n != 0 || got.Status != task.StatusFailed || got.Counts.Running != 0 {
		t.Errorf("ApplyDeviceUpdates = %+v, %d, %v; want the failed task, nothing applied", got, n, err)
	}
	// The update was not applied: the device never started, so the finished task counts it
	// cancelled (task.Task.Unstarted).
	if d, err := s.GetDevice(ctx, tk.ID, "d-00000"); err != nil || d.Status != task.DeviceCancelled {
		t.Errorf("device = %+v, %v; want cancelled, never started", d, err)
	}
}

// TestUnprocessedKeysAreFetchedAgain has DynamoDB answer a BatchGetItem with part of the keys
// unprocessed, as it does under load, and checks the store asks again instead of taking the
// missing devices for pending ones.
func TestUnprocessedKeysAreFetchedAgain(t *testing.T) {
	t.Parallel()
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	tk := running(t, s, "partial", ids("d", 4), clk.Now())
	var ups []task.DeviceUpdate
	for _, id := range tk.Request.DeviceIDs {
		ups = append(ups, task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: clk.Now()})
	}
	if _, _, err := s.ApplyDeviceUpdates(ctx, tk.ID, ups); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	tt.faults.add(&fault{op: "BatchGetItem", n: 1, after: func(result any) {
		mu.Lock()
		defer mu.Unlock()
		out := result.(*dynamodb.BatchGetItemOutput)
		got := out.Responses[tt.name]
		keep, drop := got[:1], got[1:]
		out.Responses[tt.name] = keep
		var keys []map[string]types.AttributeValue
		for _, item := range drop {
			keys = append(keys, map[string]types.AttributeValue{attrPK: item[attrPK], attrSK: item[attrSK]})
		}
		out.UnprocessedKeys = map[string]types.KeysAndAttributes{tt.name: {Keys: keys, ConsistentRead: aws.Bool(true)}}
	}})
	for i := range ups {
		ups[i].Status = task.DeviceSucceeded
	}
	got, n, err := s.ApplyDeviceUpdates(ctx, tk.ID, ups)
	if err != nil || n != 4 || got.Counts != (task.Counts{Total: 4, Succeeded: 4}) {
		t.Errorf("ApplyDeviceUpdates = %d, %+v, %v; want all 4 running devices to succeed", n, got, err)
	}
	if n := tt.count.Count("BatchGetItem"); n < 3 { // the first apply's, the partial one, the retry
		t.Errorf("%d BatchGetItem requests, want the unprocessed keys asked for again", n)
	}
}
