package localrun

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper looks after the children this process adopts as a child subreaper: the processes a
// script leaves behind when their parent exits, whatever their process group or session. It
// reaps those that have exited, and kills those still running once the device that started
// them has finished, which catches a setsid daemon that no process-group signal reaches. It
// wakes on SIGCHLD, when a device finishes, and every reaperTick, since a process is adopted
// without any signal.
type reaper struct {
	r    *Runner
	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

// reaperTick is how often the reaper looks at its adopted children without being woken.
const reaperTick = time.Second

// startReaper makes this process a child subreaper and starts the reaper.
func (r *Runner) startReaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("localrun: become a child subreaper: %w", err)
	}
	rp := &reaper{r: r, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	r.reaper = rp
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		defer close(rp.done)
		defer signal.Stop(sigs)
		tick := time.NewTicker(reaperTick)
		defer tick.Stop()
		for {
			select {
			case <-sigs:
			case <-rp.kick:
			case <-tick.C:
			case <-rp.quit:
				rp.finish()
				return
			}
			rp.pass(false)
		}
	}()
	return nil
}

// kickReaper wakes the reaper, if there is one, to look for what a finished device left.
func (r *Runner) kickReaper() {
	if r.reaper == nil {
		return
	}
	select {
	case r.reaper.kick <- struct{}{}:
	default:
	}
}

// stop kills every adopted child that is left, reaps them, and ends the reaper.
func (rp *reaper) stop() {
	close(rp.quit)
	<-rp.done
}

// finish kills every adopted child and reaps them, for a little while at most.
func (rp *reaper) finish() {
	deadline := time.Now().Add(2 * time.Second)
	for rp.pass(true) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// pass reaps the adopted children that have exited and kills those that outlived their device
// (every one of them when all is set). It returns how many adopted children it saw.
func (rp *reaper) pass(all bool) int {
	r := rp.r
	seen := 0
	for _, pid := range childPids() {
		r.children.Lock()
		if r.leaders[pid] {
			r.children.Unlock()
			continue // os/exec reaps it
		}
		seen++
		state := processState(pid)
		if state == 'Z' {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
		r.children.Unlock()
		if state == 'Z' || state == 0 {
			continue
		}
		if all || r.outlived(pid) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				r.log.Info("killed a process left behind by a finished script", "pid", pid)
			}
		}
	}
	return seen
}

// outlived reports whether process pid was started for a device of this server that has
// finished, or of a task this runner is not running, as its environment tells. A process that
// carries no such mark is left alone until the runner stops.
func (r *Runner) outlived(pid int) bool {
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		return false
	}
	var server, taskID, deviceID string
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		switch k {
		case envServerID:
			server = v
		case envTaskID:
			taskID = v
		case envDeviceID:
			deviceID = v
		}
	}
	if server != r.identity || taskID == "" || deviceID == "" {
		return false
	}
	r.mu.Lock()
	ru, ok := r.runs[taskID]
	r.mu.Unlock()
	if !ok {
		return true
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.finished[deviceID]
}

// childPids lists this process's children, from every thread's children file: an adopted
// process becomes the child of whichever thread of the subreaper the kernel picks.
func childPids() []int {
	files, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for field := range strings.FieldsSeq(string(b)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// processState returns the state letter of process pid ('R', 'S', 'Z', …), 0 when it is gone.
func processState(pid int) byte {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	fields, ok := statFields(stat)
	if !ok || len(fields) == 0 || fields[0] == "" {
		return 0
	}
	return fields[0][0]
}
