package localrun

import (
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// DefaultOutputInterval is how often the inline output of running devices is refreshed by
// default: each running task then costs at most one store write a second while its scripts
// write, and none while they are quiet.
const DefaultOutputInterval = time.Second

// follower refreshes the inline output of a run's running devices until it is stopped.
type follower struct {
	done chan struct{}
	wg   sync.WaitGroup
}

// stop ends the refreshing and waits for a refresh under way.
func (f *follower) stop() {
	close(f.done)
	f.wg.Wait()
}

// follow starts refreshing ru's running devices every OutputInterval. The interval is a real
// timer, like the deadline's: it paces writes and marks no time of the task.
func (r *Runner) follow(ru *run) *follower {
	f := &follower{done: make(chan struct{})}
	if r.cfg.OutputInterval < 0 {
		return f
	}
	f.wg.Go(func() {
		ticker := time.NewTicker(r.cfg.OutputInterval)
		defer ticker.Stop()
		sizes := map[string]int64{}
		for {
			select {
			case <-f.done:
				return
			case <-r.ctx.Done():
				return
			case <-ticker.C:
			}
			r.refresh(ru, sizes)
		}
	})
	return f
}

// running is one device whose script has not exited.
type running struct {
	id      string
	pgid    int
	started time.Time
}

// running returns the devices of ru whose scripts have not exited.
func (ru *run) running() []running {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	out := make([]running, 0, len(ru.procs))
	for id, p := range ru.procs {
		if !p.exited {
			out = append(out, running{id: id, pgid: p.pgid, started: p.started})
		}
	}
	return out
}

// refresh reports, in one call, the output of every running device of ru whose files grew
// since the last refresh (sizes, by device). The update is a complete running report (start
// time, process group), so it may even arrive before the device's own: the store applies
// whichever comes first and takes the other as a refresh of the output. A refresh that fails
// is not retried: the next one carries a fresher copy, and the device's end the whole of it.
func (r *Runner) refresh(ru *run, sizes map[string]int64) {
	var updates []task.DeviceUpdate
	live := map[string]bool{}
	for _, d := range ru.running() {
		live[d.id] = true
		size := fileSize(filepath.Join(r.outputDir(ru.id, d.id), StreamStdout)) +
			fileSize(filepath.Join(r.outputDir(ru.id, d.id), StreamStderr))
		if size == sizes[d.id] {
			continue
		}
		sizes[d.id] = size
		u := task.DeviceUpdate{DeviceID: d.id, Status: task.DeviceRunning, At: d.started, Ref: groupRef(d.pgid)}
		r.attachOutput(&u, ru.id, d.id)
		updates = append(updates, u)
	}
	for id := range sizes {
		if !live[id] {
			delete(sizes, id)
		}
	}
	if len(updates) == 0 {
		return
	}
	if _, _, quiet := ru.state(); quiet {
		return
	}
	if _, err := ru.reporter.Report(r.ctx, ru.id, updates); err != nil {
		r.log.Debug("refreshing running devices' output failed", "task_id", ru.id, "devices", len(updates), "err", err)
	}
}

// fileSize is the size of the file at path, 0 when it cannot be read.
func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}
