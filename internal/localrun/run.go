package localrun

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// stopReason says why a run stops early. The first reason wins, except that a shutdown always
// silences the run's reports.
type stopReason int

const (
	stopNone stopReason = iota
	stopCancel
	stopDeadline
	stopShutdown
	// stopDevice is a caller cancelling one device; it signals that device's script alone and
	// is never the reason of the whole run.
	stopDevice
)

// run is one task being run by this process.
type run struct {
	id       string
	req      task.Request
	reporter Reporter
	grace    time.Duration
	deadline time.Time // zero when the task has none
	// updates reports the devices' updates while execute runs.
	updates *batcher

	mu      sync.Mutex
	reason  stopReason
	quiet   bool          // the server is shutting down: report nothing more
	stopped chan struct{} // closed when reason is first set
	procs   map[string]*proc
	// finished are the devices whose script has exited; whatever they left behind may be
	// killed (see reaper).
	finished map[string]bool
	errors   int // devices counted against maxErrors
	// asked are the devices a caller cancelled one by one: one not started yet never starts,
	// and one running is stopped (see stopDevices).
	asked map[string]bool
}

// proc is one device's script while its process group leader has not been reaped.
type proc struct {
	pgid int
	// started is when the script was started, the device's StartedAt.
	started time.Time
	// cgroup is the script's own cgroup, nil where the runner has none.
	cgroup *leaf
	// exited is set once the leader has exited; its group is never signalled again by stop,
	// since the group id is freed when the leader is reaped.
	exited bool
	// signalled is why this runner signalled the group, stopNone if it did not.
	signalled stopReason
	killTimer *time.Timer
}

// term asks everything the script runs to stop: its process group, and everything in its
// cgroup, which holds what left the group too.
func (p *proc) term() {
	_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
	if p.cgroup != nil {
		signalCgroup(p.cgroup.dir, syscall.SIGTERM)
	}
}

// kill ends everything the script runs at once. The cgroup is written to only when something
// still runs in it, which after a script's normal exit is rarely the case.
func (p *proc) kill() {
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	if p.cgroup != nil && p.cgroup.populated() {
		p.cgroup.kill()
	}
}

func newRun(t *task.Task, rep Reporter, grace time.Duration) *run {
	return &run{id: t.ID, req: t.Request, reporter: rep, grace: grace, deadline: t.Deadline(),
		stopped: make(chan struct{}), procs: make(map[string]*proc), finished: make(map[string]bool),
		asked: make(map[string]bool)}
}

// stop ends the run early: no device starts any more, and every running script's group gets
// SIGTERM, then SIGKILL after the grace period if its leader has not exited by then.
func (ru *run) stop(reason stopReason) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if reason == stopShutdown {
		ru.quiet = true
	}
	if ru.reason != stopNone {
		return
	}
	ru.reason = reason
	close(ru.stopped)
	for _, p := range ru.procs {
		ru.signal(p, reason)
	}
}

// signal sends SIGTERM to p's group and arms the SIGKILL that follows. ru.mu must be held.
func (ru *run) signal(p *proc, reason stopReason) {
	if p.exited || p.signalled != stopNone {
		return
	}
	p.signalled = reason
	p.term()
	p.killTimer = time.AfterFunc(ru.grace, func() {
		ru.mu.Lock()
		defer ru.mu.Unlock()
		if !p.exited {
			p.kill()
		}
	})
}

// killAll sends SIGKILL at once to every group still running.
func (ru *run) killAll() {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	for _, p := range ru.procs {
		if !p.exited {
			p.kill()
		}
	}
}

// stopDevices stops the named devices alone: a running script's group gets SIGTERM, then
// SIGKILL after the grace period, and a device not started yet is skipped when its turn comes.
func (ru *run) stopDevices(ids []string) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	for _, id := range ids {
		ru.asked[id] = true
		if p, ok := ru.procs[id]; ok {
			ru.signal(p, stopDevice)
		}
	}
}

// wasAsked reports whether a caller cancelled device id.
func (ru *run) wasAsked(id string) bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.asked[id]
}

// register records a started script, and stops it at once if the run is already stopping or
// a caller cancelled the device while it was being started.
func (ru *run) register(deviceID string, p *proc) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.procs[deviceID] = p
	switch {
	case ru.reason != stopNone:
		ru.signal(p, ru.reason)
	case ru.asked[deviceID]:
		ru.signal(p, stopDevice)
	}
}

// exited records that a script's leader has exited and returns why it was signalled, if it
// was, and whether reports are silenced.
func (ru *run) exited(deviceID string, p *proc) (stopReason, bool) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	p.exited = true
	if p.killTimer != nil {
		p.killTimer.Stop()
	}
	delete(ru.procs, deviceID)
	ru.finished[deviceID] = true
	return p.signalled, ru.quiet
}

// state returns the run's stop reason, error count and whether it is silenced.
func (ru *run) state() (stopReason, int, bool) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.reason, ru.errors, ru.quiet
}

// countError counts a device against maxErrors.
func (ru *run) countError() {
	ru.mu.Lock()
	ru.errors++
	ru.mu.Unlock()
}

// execute runs the pending devices of a task, at most maxConcurrency at a time, until they are
// all done or the run stops early (cancel, deadline, maxErrors exceeded, shutdown); the devices
// it never started are then reported as such.
func (r *Runner) execute(ru *run, path string, pending []string, lost []task.DeviceUpdate, priorErrors int) {
	defer r.forget(ru)
	ru.updates = r.newBatcher(ru)
	// Every update is stored before the run is forgotten.
	defer ru.updates.close()
	r.prepareDirs(ru.id)
	ru.mu.Lock()
	ru.errors = priorErrors
	for _, u := range lost {
		if u.Status.CountsAsError() {
			ru.errors++
		}
	}
	ru.mu.Unlock()
	r.report(ru, lost)

	if timer := r.armDeadline(ru); timer != nil {
		defer timer.Stop()
	}

	budget := ru.req.ErrorBudget()
	slots := make(chan struct{}, ru.req.Concurrency())
	var devices sync.WaitGroup
	maxErrorsExceeded, waited := false, false
	// more reports whether another device may start: the run has not been stopped, and no
	// more devices have failed than maxErrors allows.
	more := func() bool {
		reason, errs, _ := ru.state()
		if reason == stopNone && errs > budget {
			maxErrorsExceeded = true
		}
		return reason == stopNone && !maxErrorsExceeded
	}
	following := r.follow(ru)
	defer following.stop()
	started, next := 0, 0
	for ; next < len(pending); next++ {
		id := pending[next]
		if ru.wasAsked(id) {
			r.skip(ru, id)
			continue
		}
		// The task's own maxConcurrency first, then the server's cap, shared with every task.
		select {
		case slots <- struct{}{}:
		case <-ru.stopped:
		}
		if !more() {
			break
		}
		if ru.wasAsked(id) { // cancelled while it waited for a slot
			<-slots
			r.skip(ru, id)
			continue
		}
		if !r.pool.tryAcquire() {
			if !waited {
				waited = true
				r.setStep(ru, fmt.Sprintf("waiting for a free slot: this server runs at most %d scripts at once", r.maxProcs))
			}
			if !r.pool.acquire(ru.stopped) {
				break
			}
			// The wait may have been long: the run may have stopped, or failed, or a caller
			// cancelled the device, meanwhile.
			if !more() {
				r.pool.release()
				break
			}
			if ru.wasAsked(id) {
				r.pool.release()
				<-slots
				r.skip(ru, id)
				continue
			}
		}
		started++
		devices.Add(1)
		go func() {
			defer devices.Done()
			defer func() { <-slots }()
			defer r.pool.release()
			r.runDevice(ru, path, id)
		}()
	}
	if waited && next == len(pending) {
		r.setStep(ru, "") // every device has started: the task is just running
	}

	if rest := pending[next:]; len(rest) > 0 {
		reason, _, quiet := ru.state()
		var status task.DeviceStatus
		var why string
		switch {
		case quiet:
		case reason == stopCancel:
			status, why = task.DeviceCancelled, "not started: the task was cancelled"
		case reason == stopDeadline:
			status, why = task.DeviceTimedOut, fmt.Sprintf("not started before the task's deadline of %ds", ru.req.TimeoutSeconds)
		case maxErrorsExceeded:
			status, why = task.DeviceCancelled, "not started: maxErrors exceeded"
		}
		if status != "" {
			now := r.cfg.Now().UTC()
			updates := make([]task.DeviceUpdate, len(rest))
			for i, id := range rest {
				updates[i] = task.DeviceUpdate{DeviceID: id, Status: status, At: now, Reason: why}
			}
			r.report(ru, updates)
		}
	}
	devices.Wait()
	r.log.Info("task run finished", "task_id", ru.id, "started", started, "not_started", len(pending)-started)
}

// skip reports a device that a caller cancelled before it started. The engine recorded the
// cancel already, so this report is normally a duplicate the store ignores; it makes sure
// that a device the run leaves out is never left pending.
func (r *Runner) skip(ru *run, id string) {
	if _, _, quiet := ru.state(); quiet {
		return
	}
	r.report(ru, []task.DeviceUpdate{{DeviceID: id, Status: task.DeviceCancelled, At: r.cfg.Now().UTC(),
		Reason: "cancelled by request before it started"}})
}

// setStep tells the Reporter, when it is also a Stepper, what the task is doing.
func (r *Runner) setStep(ru *run, step string) {
	s, ok := ru.reporter.(Stepper)
	if !ok {
		return
	}
	if _, _, quiet := ru.state(); quiet {
		return
	}
	if err := s.SetStep(r.ctx, ru.id, step); err != nil {
		r.log.Warn("recording what a task is doing failed", "task_id", ru.id, "step", step, "err", err)
	}
}

// armDeadline stops the run at the task's deadline. The clock is read once, here, to know how
// long is left; a real timer does the waiting. It returns the timer, or nil when the task has
// no deadline or it has passed already (the run is then stopped at once).
func (r *Runner) armDeadline(ru *run) *time.Timer {
	if ru.deadline.IsZero() {
		return nil
	}
	left := ru.deadline.Sub(r.cfg.Now())
	if left <= 0 {
		ru.stop(stopDeadline)
		return nil
	}
	return time.AfterFunc(left, func() { ru.stop(stopDeadline) })
}
