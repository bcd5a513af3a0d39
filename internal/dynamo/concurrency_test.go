package dynamo

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// TestTwoHundredWriters has 200 goroutines report duplicated and reordered updates for one
// task while bursts of throttling hit every kind of request and readers watch the task. Every
// device must end counted once in its final status, the percentage must reach 100, no update
// may be counted twice, and nobody may see the version, or progress, go backwards.
func TestTwoHundredWriters(t *testing.T) {
	t.Parallel()
	const devices, copies, writers, readers = 60, 2, 200, 3
	tt := newTable(t)
	clk := newClock()
	s := tt.store(clk.Now)
	ctx := t.Context()
	start := running(t, s, "crowded", ids("d", devices), clk.Now())
	ends := []task.DeviceStatus{task.DeviceSucceeded, task.DeviceFailed, task.DeviceTimedOut, task.DeviceCancelled, task.DeviceUndeliverable}

	var updates []task.DeviceUpdate
	want := task.Counts{Total: devices}
	at := clk.Now()
	for i, id := range start.Request.DeviceIDs {
		end := ends[i%len(ends)]
		want.Add(end, 1)
		for range copies {
			updates = append(updates,
				task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: at, Ref: "ref-" + id},
				task.DeviceUpdate{DeviceID: id, Status: end, At: at.Add(time.Second), ExitCode: new(i)})
		}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("shuffle seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	rng.Shuffle(len(updates), func(i, j int) { updates[i], updates[j] = updates[j], updates[i] })
	// Each writer gets one or two updates (240 over 200 writers), so every device's updates are
	// in flight in several writers at once.
	shares := make([][]task.DeviceUpdate, writers)
	for i, u := range updates {
		shares[i%writers] = append(shares[i%writers], u)
	}

	for _, f := range []*fault{
		{op: "TransactWriteItems", n: 30, every: 4, err: throughputExceeded},
		{op: "TransactWriteItems", n: 15, every: 5, err: cancel(reasonThrottled)},
		{op: "BatchGetItem", n: 30, every: 3, err: throttlingException},
		{op: "GetItem", n: 30, every: 3, err: throughputExceeded},
	} {
		tt.faults.add(f)
	}

	stop := make(chan struct{})
	var watchers sync.WaitGroup
	for range readers {
		watchers.Go(func() {
			last := start
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.GetTask(ctx, start.ID)
				if err != nil {
					t.Errorf("reader: %v", err)
					return
				}
				checkProgress(t, "reader", last, got)
				last = got
			}
		})
	}
	var applied atomic.Int64
	var wg sync.WaitGroup
	for w, mine := range shares {
		split := rng.IntN(len(mine) + 1) // the writer sends its share in one call or two
		wg.Go(func() {
			last := start
			for _, batch := range [][]task.DeviceUpdate{mine[:split], mine[split:]} {
				if len(batch) == 0 {
					continue
				}
				got, n, err := s.ApplyDeviceUpdates(ctx, start.ID, batch)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				checkProgress(t, "writer", last, got)
				last = got
				applied.Add(int64(n))
			}
		})
	}
	wg.Wait()
	close(stop)
	watchers.Wait()

	final, err := s.GetTask(ctx, start.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Counts != want || final.Counts.Percentage() != 100 {
		t.Errorf("final counts %+v (%d%%), want %+v (100%%)", final.Counts, final.Counts.Percentage(), want)
	}
	// Every terminal move applies once; a running move applies only when it came first, and
	// then the device remembers it started.
	started := 0
	cursor := ""
	for i := 0; ; {
		page, err := s.ListDevices(ctx, start.ID, task.DeviceQuery{Limit: task.MaxPageSize, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Devices {
			if d.StartedAt != nil {
				started++
			}
			if d.Status != ends[i%len(ends)] || d.ExitCode == nil || *d.ExitCode != i || (d.StartedAt != nil) != (d.Ref != "") {
				t.Errorf("device %s = %s exit %v started %v ref %q; want %s exit %d", d.ID, d.Status, d.ExitCode, d.StartedAt, d.Ref, ends[i%len(ends)], i)
			}
			i++
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if n := applied.Load(); n != int64(devices+started) {
		t.Errorf("%d updates applied, want %d (%d terminal, %d running)", n, devices+started, devices, started)
	}
	if rise := final.Version - start.Version; rise < 1 || rise > applied.Load() {
		t.Errorf("version rose by %d with %d updates applied", rise, applied.Load())
	}
	injected := tt.faults.hit("TransactWriteItems") + tt.faults.hit("BatchGetItem") + tt.faults.hit("GetItem")
	t.Logf("%d updates applied, %d devices started, version +%d, %d injected throttles; requests: %s",
		applied.Load(), started, final.Version-start.Version, injected, tt.count)
	if injected != 105 {
		t.Errorf("%d throttles were injected, want all 105", injected)
	}
}

// checkProgress reports a task read after last that went backwards or does not add up.
func checkProgress(t *testing.T, who string, last, got *task.Task) {
	t.Helper()
	sum := 0
	for _, s := range task.DeviceStatuses() {
		sum += got.Counts.Of(s)
	}
	switch {
	case got.Version < last.Version:
		t.Errorf("%s saw version %d after %d", who, got.Version, last.Version)
	case got.Counts.Done() < last.Counts.Done() || got.Counts.Percentage() < last.Counts.Percentage():
		t.Errorf("%s saw progress go from %+v to %+v", who, last.Counts, got.Counts)
	case sum != got.Counts.Total:
		t.Errorf("%s saw counts %+v that do not add up", who, got.Counts)
	}
}
