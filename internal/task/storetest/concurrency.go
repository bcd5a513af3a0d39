package storetest

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testConcurrency(e *env) {
	e.run("duplicated and reordered updates from many writers", func(e *env) {
		const devices, copies, writers, readers = 150, 3, 100, 3
		tk := e.move(e.create(e.newTask(e.id("owner"), deviceNames(devices))), task.StatusRunning, 0)
		ids := tk.Request.DeviceIDs
		ends := []task.DeviceStatus{task.DeviceSucceeded, task.DeviceFailed, task.DeviceTimedOut, task.DeviceCancelled, task.DeviceUndeliverable}

		// Every device gets a running and a terminal update, each sent several times, all shuffled.
		var updates []task.DeviceUpdate
		want := task.Counts{Total: devices}
		at := e.clock.Now()
		for i, id := range ids {
			end := ends[i%len(ends)]
			want.Add(end, 1)
			for range copies {
				updates = append(updates,
					task.DeviceUpdate{DeviceID: id, Status: task.DeviceRunning, At: at, Ref: "ref-" + id},
					task.DeviceUpdate{DeviceID: id, Status: end, At: at.Add(time.Second), ExitCode: new(i), Stdout: "out " + id})
			}
		}
		seed := uint64(time.Now().UnixNano())
		e.t.Logf("shuffle seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, seed))
		rng.Shuffle(len(updates), func(i, j int) { updates[i], updates[j] = updates[j], updates[i] })

		// Each writer sends its share in batches of one to four updates.
		batches := make([][][]task.DeviceUpdate, writers)
		for j := 0; j < len(updates); {
			n := min(1+rng.IntN(4), len(updates)-j)
			w := rng.IntN(writers)
			batches[w] = append(batches[w], updates[j:j+n])
			j += n
		}

		var applied atomic.Int64
		stop := make(chan struct{})
		var watchers sync.WaitGroup
		for range readers {
			watchers.Go(func() { e.watchTask(tk, stop) })
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for _, b := range batches[w] {
					got, n, err := e.store.ApplyDeviceUpdates(e.ctx, tk.ID, b)
					if err != nil {
						e.t.Errorf("writer %d: ApplyDeviceUpdates = %v", w, err)
						return
					}
					if !countsConsistent(got.Counts) {
						e.t.Errorf("writer %d: counts %+v do not add up", w, got.Counts)
					}
					applied.Add(int64(n))
				}
			})
		}
		wg.Wait()
		close(stop)
		watchers.Wait()

		final := e.get(tk.ID)
		if final.Counts != want {
			e.t.Errorf("final counts %+v, want %+v", final.Counts, want)
		}
		if p := final.Counts.Percentage(); p != 100 {
			e.t.Errorf("final percentage %d, want 100", p)
		}
		// Each terminal update applies once; a running update applies only if it came first.
		if n := applied.Load(); n < devices || n > 2*devices {
			e.t.Errorf("%d updates applied in all, want between %d and %d", n, devices, 2*devices)
		}
		if rise := final.Version - tk.Version; rise < 1 || rise > applied.Load() {
			e.t.Errorf("version rose by %d with %d updates applied", rise, applied.Load())
		}
		for i, d := range e.allDevices(tk.ID) {
			end := ends[i%len(ends)]
			if d.ID != ids[i] || d.Status != end || d.ExitCode == nil || *d.ExitCode != i || d.Stdout != "out "+d.ID {
				e.t.Errorf("device %d = %s %s exit %v stdout %q; want %s %s exit %d", i, d.ID, d.Status, d.ExitCode, d.Stdout, ids[i], end, i)
			}
		}
	})
}

// watchTask reads tk over and over until stop is closed, and reports a version that goes
// backwards, progress that goes backwards, or counts that do not add up.
func (e *env) watchTask(tk *task.Task, stop <-chan struct{}) {
	last := tk.Version
	done := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		got, err := e.store.GetTask(e.ctx, tk.ID)
		if err != nil {
			e.t.Errorf("reader: GetTask = %v", err)
			return
		}
		if got.Version < last {
			e.t.Errorf("reader saw version %d after %d", got.Version, last)
		}
		if got.Counts.Done() < done {
			e.t.Errorf("reader saw %d devices done after %d", got.Counts.Done(), done)
		}
		if !countsConsistent(got.Counts) {
			e.t.Errorf("reader saw counts %+v that do not add up", got.Counts)
		}
		last, done = got.Version, got.Counts.Done()
	}
}

// allDevices lists every device of a task, in request order.
func (e *env) allDevices(taskID string) []*task.Device {
	e.t.Helper()
	var all []*task.Device
	q := task.DeviceQuery{Limit: task.MaxPageSize}
	for {
		page, err := e.store.ListDevices(e.ctx, taskID, q)
		if err != nil {
			e.t.Fatalf("ListDevices(%s) = %v", taskID, err)
		}
		all = append(all, page.Devices...)
		if page.Next == "" {
			return all
		}
		if len(all) > task.MaxDevices {
			e.t.Fatalf("ListDevices(%s) does not end", taskID)
		}
		q.Cursor = page.Next
	}
}
