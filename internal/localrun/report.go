package localrun

import (
	"iter"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Report retries: the store may be briefly busy, and a lost terminal update would leave a
// device running forever, so a failed report is retried with backoff before it is given up
// (and logged as an error with what was lost).
const (
	reportAttempts = 8
	reportBackoff  = 50 * time.Millisecond
	reportMaxDelay = 5 * time.Second
)

// report sends updates for ru's task in batches, retrying each batch.
func (r *Runner) report(ru *run, updates []task.DeviceUpdate) {
	for batch := range chunks(updates) {
		r.reportBatch(ru, batch)
	}
}

func (r *Runner) reportBatch(ru *run, updates []task.DeviceUpdate) {
	delay := reportBackoff
	for attempt := 1; ; attempt++ {
		_, err := ru.reporter.Report(r.ctx, ru.id, updates)
		if err == nil {
			return
		}
		final := attempt == reportAttempts || r.ctx.Err() != nil || task.IsCode(err, task.CodeNotFound)
		if final {
			for _, u := range updates {
				r.log.Error("device update lost", "task_id", ru.id, "device_id", u.DeviceID, "status", u.Status,
					"attempts", attempt, "err", err)
			}
			return
		}
		r.log.Warn("reporting device updates failed; retrying", "task_id", ru.id, "updates", len(updates),
			"attempt", attempt, "err", err)
		select {
		case <-time.After(delay):
		case <-r.ctx.Done():
		}
		delay = min(2*delay, reportMaxDelay)
	}
}

// batcher gathers the updates of a run's devices and reports them together: whatever the
// devices reported while the previous report was being stored goes into the next one, so
// that devices finishing at the same moment share one store commit instead of taking one each
// (a 10,000-device task of short scripts made 20,000 commits). Nothing waits on a timer: a
// lone update is reported at once.
type batcher struct {
	r       *Runner
	ru      *run
	mu      sync.Mutex
	pending []task.DeviceUpdate
	waiting []chan struct{} // closed once the pending updates are reported
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// newBatcher starts the reporting of ru's device updates.
func (r *Runner) newBatcher(ru *run) *batcher {
	b := &batcher{r: r, ru: ru, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.loop()
	return b
}

// add queues u for the next report.
func (b *batcher) add(u task.DeviceUpdate) {
	b.mu.Lock()
	b.pending = append(b.pending, u)
	b.mu.Unlock()
	b.signal()
}

// addAndWait queues u and returns once it has been reported: a device's last update, so that
// the device's slot is free only once the store no longer counts it running.
func (b *batcher) addAndWait(u task.DeviceUpdate) {
	reported := make(chan struct{})
	b.mu.Lock()
	b.pending = append(b.pending, u)
	b.waiting = append(b.waiting, reported)
	b.mu.Unlock()
	b.signal()
	<-reported
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// close reports what is queued and returns once it is stored (or given up).
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.signal()
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	for range b.wake {
		for {
			b.mu.Lock()
			updates, waiting, closed := b.pending, b.waiting, b.closed
			b.pending, b.waiting = nil, nil
			b.mu.Unlock()
			if len(updates) == 0 {
				if closed {
					return
				}
				break
			}
			b.r.report(b.ru, updates)
			for _, w := range waiting {
				close(w)
			}
		}
	}
}

// chunks cuts updates into batches no larger than a store page.
func chunks(updates []task.DeviceUpdate) iter.Seq[[]task.DeviceUpdate] {
	return func(yield func([]task.DeviceUpdate) bool) {
		for len(updates) > 0 {
			n := min(len(updates), task.MaxPageSize)
			if !yield(updates[:n]) {
				return
			}
			updates = updates[n:]
		}
	}
}

// attachOutput puts the inline copies of a device's output files, as far as it has any, into
// u: for devices a previous life of the server ran.
func (r *Runner) attachOutput(u *task.DeviceUpdate, taskID, deviceID string) {
	dir := r.outputDir(taskID, deviceID)
	var err error
	u.Stdout, u.StdoutTruncated, err = inlineFile(filepath.Join(dir, StreamStdout), task.StdoutInlineLimit)
	if err != nil && !isNotExist(err) {
		r.log.Warn("reading a script's stdout failed", "task_id", taskID, "device_id", deviceID, "err", err)
	}
	u.Stderr, u.StderrTruncated, err = inlineFile(filepath.Join(dir, StreamStderr), task.StderrInlineLimit)
	if err != nil && !isNotExist(err) {
		r.log.Warn("reading a script's stderr failed", "task_id", taskID, "device_id", deviceID, "err", err)
	}
}
