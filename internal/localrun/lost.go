package localrun

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/fleetrun/fleetrun/internal/task"
)

// plan is what the store says about a task's devices when this process takes it up.
type plan struct {
	pending []string       // never started, in request order
	lost    []*task.Device // running in the store, but not in this process
	asked   []*task.Device // lost too, but a caller had asked them to stop (CancelRequestedAt)
	errors  int            // devices already counted against maxErrors
}

// plan reads every device of t from the store, page by page.
func (r *Runner) plan(ctx context.Context, t *task.Task) (plan, error) {
	var p plan
	cursor := ""
	for {
		page, err := r.cfg.Devices.ListDevices(ctx, t.ID, task.DeviceQuery{Limit: task.MaxPageSize, Cursor: cursor})
		if err != nil {
			return plan{}, fmt.Errorf("localrun: list devices of %s: %w", t.ID, err)
		}
		for _, d := range page.Devices {
			switch {
			case d.Status == task.DevicePending:
				p.pending = append(p.pending, d.ID)
			case d.Status == task.DeviceRunning && d.CancelRequestedAt != nil:
				p.asked = append(p.asked, d)
			case d.Status == task.DeviceRunning:
				p.lost = append(p.lost, d)
			case d.Status.CountsAsError():
				p.errors++
			}
		}
		if cursor = page.Next; cursor == "" {
			return p, nil
		}
	}
}

// refPrefix starts the Ref of a device whose script runs in a local process group.
const refPrefix = "pgid:"

// groupRef is the Ref recorded for a script running in process group pgid.
func groupRef(pgid int) string { return refPrefix + strconv.Itoa(pgid) }

// parseRef returns the process group recorded in a device's Ref.
func parseRef(ref string) (int, bool) {
	s, ok := strings.CutPrefix(ref, refPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 1 {
		return 0, false
	}
	return n, true
}

// stopLost kills what is left of devices that a previous life of the server was running and
// returns their updates: status, with reason, and the output they wrote before the restart.
//
// A process group id can be reused once the group is empty, so a group is killed only if one
// of its processes still carries the device's FLEETRUN_TASK_ID and FLEETRUN_DEVICE_ID: an
// unrelated process that happens to lead a group with the same id is never touched.
func (r *Runner) stopLost(taskID string, lost []*task.Device, reason string, status task.DeviceStatus) []task.DeviceUpdate {
	if len(lost) == 0 {
		return nil
	}
	groups, err := processGroups()
	if err != nil {
		r.log.Warn("cannot list processes to stop devices lost in a restart", "task_id", taskID, "err", err)
	}
	now := r.cfg.Now().UTC()
	updates := make([]task.DeviceUpdate, 0, len(lost))
	for _, d := range lost {
		if pgid, ok := parseRef(d.Ref); ok && ownsGroup(groups[pgid], taskID, d.ID) {
			if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
				r.log.Error("killing a script lost in a restart failed", "task_id", taskID, "device_id", d.ID, "pgid", pgid, "err", err)
			} else {
				r.log.Info("killed a script lost in a restart", "task_id", taskID, "device_id", d.ID, "pgid", pgid)
			}
		}
		u := task.DeviceUpdate{DeviceID: d.ID, Status: status, At: now, Reason: reason, Ref: d.Ref}
		if safeElement(d.ID) {
			r.attachOutput(&u, taskID, d.ID)
		}
		updates = append(updates, u)
	}
	return updates
}

// processGroups maps each process group on the machine to the processes in it, read from /proc.
func processGroups() (map[int][]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("localrun: read /proc: %w", err)
	}
	groups := make(map[int][]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone already
		}
		// After the command name: state, ppid, pgrp.
		fields, ok := statFields(stat)
		if !ok || len(fields) < 3 {
			continue
		}
		if pgrp, err := strconv.Atoi(fields[2]); err == nil {
			groups[pgrp] = append(groups[pgrp], pid)
		}
	}
	return groups, nil
}

// ownsGroup reports whether one of pids was started for device deviceID of task taskID, as
// its environment shows.
func ownsGroup(pids []int, taskID, deviceID string) bool {
	wantTask := []byte(envTaskID + "=" + taskID)
	wantDevice := []byte(envDeviceID + "=" + deviceID)
	for _, pid := range pids {
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err != nil {
			continue
		}
		var hasTask, hasDevice bool
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			hasTask = hasTask || bytes.Equal(kv, wantTask)
			hasDevice = hasDevice || bytes.Equal(kv, wantDevice)
		}
		if hasTask && hasDevice {
			return true
		}
	}
	return false
}
