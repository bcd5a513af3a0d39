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

	mu      sync.Mutex
	reason  stopReason
	quiet   bool          // the server is shutting down: report nothing more
	stopped chan struct{} // closed when reason is first set
	procs   map[string]*proc
	errors  int // devices counted against maxErrors
	// asked are the devices a caller cancelled one by one: one not started yet never starts,
	// and one running is stopped (see stopDevices).
	asked map[string]bool
}

// proc is one device's script while its process group leader has not been reaped.
type proc struct {
	pgid int
	// started is when the script was started, the device's StartedAt.
	started time.Time
	// exited is set once the leader has exited; its group is never signalled again by stop,
	// since the group id is freed when the leader is reaped.
	exited bool
	// signalled is why this runner signalled the group, stopNone if it did not.
	signalled stopReason
	kill      *time.Timer
}

func newRun(t *task.Task, rep Reporter, grace time.Duration) *run {
	return &run{id: t.ID, req: t.Request, reporter: rep, grace: grace, deadline: t.Deadline(),
		stopped: make(chan struct{}), procs: make(map[string]*proc), asked: make(map[string]bool)}
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
	_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
	p.kill = time.AfterFunc(ru.grace, func() {
		ru.mu.Lock()
		defer ru.mu.Unlock()
		if !p.exited {
			_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
		}
	})
}

// killAll sends SIGKILL at once to every group still running.
func (ru *run) killAll() {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	for _, p := range ru.procs {
		if !p.exited {
			_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
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
	if p.kill != nil {
		p.kill.Stop()
	}
	delete(ru.procs, deviceID)
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
	maxErrorsExceeded := false
	following := r.follow(ru)
	defer following.stop()
	started, next := 0, 0
	for ; next < len(pending); next++ {
		id := pending[next]
		if ru.wasAsked(id) {
			r.skip(ru, id)
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ru.stopped:
		}
		reason, errs, _ := ru.state()
		if reason == stopNone && errs > budget {
			maxErrorsExceeded = true
		}
		if reason != stopNone || maxErrorsExceeded {
			break
		}
		if ru.wasAsked(id) { // cancelled while it waited for a slot
			<-slots
			r.skip(ru, id)
			continue
		}
		started++
		devices.Add(1)
		go func() {
			defer devices.Done()
			defer func() { <-slots }()
			r.runDevice(ru, path, id)
		}()
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
