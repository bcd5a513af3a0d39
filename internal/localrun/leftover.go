package localrun

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// envServerID names, in every script's environment, the server process that started it, as
// "<pid>.<start time>" (see processIdentity). A server that dies without stopping its scripts
// (SIGKILL, a crash, the OOM killer) leaves that mark on everything they started, and the next
// server on this machine, on any data directory, finds it there (StopLeftovers).
const envServerID = "FLEETRUN_SERVER_ID"

// processIdentity identifies process pid for as long as it lives: its pid and its start time
// in clock ticks since boot (field 22 of /proc/<pid>/stat), since a pid alone is reused.
func processIdentity(pid int) (string, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", err
	}
	fields, ok := statFields(stat)
	// After the command name: state is field 3, start time field 22.
	if !ok || len(fields) < 20 {
		return "", fmt.Errorf("localrun: /proc/%d/stat has too few fields", pid)
	}
	return strconv.Itoa(pid) + "." + fields[19], nil
}

// statFields returns the fields of a /proc/<pid>/stat line after the command name, which is in
// parentheses and may hold anything; fields[0] is the state.
func statFields(stat []byte) ([]string, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(stat[i+1:])), true
}

// identityAlive reports whether the process that id names still exists.
func identityAlive(id string) bool {
	pidText, _, ok := strings.Cut(id, ".")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	now, err := processIdentity(pid)
	return err == nil && now == id
}

// StopLeftovers kills what fleetrun servers that died on this machine left running: every
// process whose environment carries the envServerID of a server process that no longer exists,
// and, where cgroups are in use, every cgroup such a server created next to this process's
// own. It never touches the scripts of a server that is still alive, nor any other process.
// `fleetrun serve` calls it once when it starts; it returns how many processes and cgroups it
// killed.
//
// A process that cleared its environment carries no mark; only its cgroup, where there is one,
// finds it.
func StopLeftovers(log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	killed := stopLeftoverCgroups(log)
	self, err := processIdentity(os.Getpid())
	if err != nil {
		return killed, fmt.Errorf("localrun: identify this process: %w", err)
	}
	// A leftover may fork while it is being looked for; a few passes catch its children.
	for range 3 {
		n, err := stopMarkedProcesses(self, log)
		killed += n
		if err != nil || n == 0 {
			return killed, err
		}
	}
	return killed, nil
}

// stopMarkedProcesses kills every process marked with the envServerID of a dead server.
func stopMarkedProcesses(self string, log *slog.Logger) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("localrun: read /proc: %w", err)
	}
	prefix := []byte(envServerID + "=")
	alive := map[string]bool{self: true}
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or not ours to read (and so not ours to kill)
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			id, ok := bytes.CutPrefix(kv, prefix)
			if !ok {
				continue
			}
			owner := string(id)
			isAlive, seen := alive[owner]
			if !seen {
				isAlive = identityAlive(owner)
				alive[owner] = isAlive
			}
			if !isAlive {
				if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
					killed++
					log.Warn("killed a process left running by a server that died", "pid", pid, "server", owner)
				}
			}
			break
		}
	}
	return killed, nil
}

// stopLeftoverCgroups kills and removes the runner cgroups of dead servers next to this
// process's own cgroup. It returns how many cgroups it killed.
func stopLeftoverCgroups(log *slog.Logger) int {
	own, err := ownCgroup()
	if err != nil {
		return 0
	}
	entries, err := os.ReadDir(own)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		// <pid>.<start time>.<runner>: the server is the first two.
		parts := strings.Split(rest, ".")
		if len(parts) != 3 || identityAlive(parts[0]+"."+parts[1]) {
			continue
		}
		dir := filepath.Join(own, e.Name())
		if err := killCgroup(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot kill the cgroup of a server that died", "cgroup", dir, "err", err)
			continue
		}
		removeCgroupTree(dir, 2*time.Second)
		log.Warn("killed the scripts of a server that died", "cgroup", dir)
		n++
	}
	return n
}
