package localrun

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroups puts each device's script in a cgroup v2 of its own, where this process may create
// cgroups: under its own cgroup, a directory for the runner (cgroupPrefix + the server's
// identity), and in it the leaves the scripts run in. A script is started inside its leaf
// (clone3 with CLONE_INTO_CGROUP), so everything it ever starts stays there whatever it does to
// its process group or session (setsid, double forks), and writing cgroup.kill ends all of it
// at once.
//
// A leaf that is empty when its script has exited is used again by a later script: on a busy
// server, creating, killing and removing a cgroup per script cost more than the script's own
// start. A leaf in which something was left is killed and removed instead, so no script ever
// starts beside another's leftovers; so is every leaf that was ever killed, even once empty,
// since some kernels go on killing every process cloned into a cgroup after its cgroup.kill.
type cgroups struct {
	dir string
	seq atomic.Uint64

	mu   sync.Mutex
	free []*leaf
	// closed is set by close; leaves released after it are removed, not kept.
	closed bool
}

// leaf is one script's cgroup.
type leaf struct {
	dir string
	// fd is the open directory, for SysProcAttr.CgroupFD.
	fd int
	// events is cgroup.events, open to learn whether anything still runs in the leaf.
	events int
	// killed is set once cgroup.kill was written: the leaf is never used again.
	killed atomic.Bool
}

// populated reports whether a process still runs in the leaf. A process that has exited but is
// not reaped yet no longer counts. When the answer cannot be read, the leaf is taken for
// populated, so it is killed and removed rather than used again.
func (l *leaf) populated() bool {
	var b [64]byte
	n, err := unix.Pread(l.events, b[:], 0)
	if err != nil || n <= 0 {
		return true
	}
	return !bytes.Contains(b[:n], []byte("populated 0"))
}

// kill sends SIGKILL to every process in the leaf.
func (l *leaf) kill() {
	l.killed.Store(true)
	_ = killCgroup(l.dir)
}

// release closes the leaf's descriptors.
func (l *leaf) release() {
	_ = unix.Close(l.fd)
	_ = unix.Close(l.events)
}

// cgroupPrefix starts the name of every runner's cgroup directory, so a later server can find
// the directories of one that died (see StopLeftovers).
const cgroupPrefix = "fleetrun."

// runnerSeq tells apart the runners of one process (tests start several).
var runnerSeq atomic.Uint64

// openCgroups creates the runner's cgroup directory, or says why it cannot: no cgroup v2
// hierarchy, no permission to create a cgroup there (no delegation), or a kernel without
// cgroup.kill (before Linux 5.14).
func openCgroups(identity string) (*cgroups, error) {
	own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(own, fmt.Sprintf("%s%s.%d", cgroupPrefix, identity, runnerSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create a cgroup under %s: %w", own, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		_ = os.Remove(dir)
		return nil, errors.New("the kernel has no cgroup.kill (Linux 5.14 or later is needed)")
	}
	if unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK) != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cannot move processes into cgroups under %s", own)
	}
	return &cgroups{dir: dir}, nil
}

// take returns an empty leaf for one device: a free one, or a new one.
func (c *cgroups) take() (*leaf, error) {
	c.mu.Lock()
	if n := len(c.free); n > 0 {
		l := c.free[n-1]
		c.free = c.free[:n-1]
		c.mu.Unlock()
		return l, nil
	}
	c.mu.Unlock()
	dir := filepath.Join(c.dir, "d"+strconv.FormatUint(c.seq.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("localrun: create a cgroup: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("localrun: open a cgroup: %w", err)
	}
	events, err := unix.Open(filepath.Join(dir, "cgroup.events"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = unix.Close(fd)
		_ = os.Remove(dir)
		return nil, fmt.Errorf("localrun: open a cgroup's events: %w", err)
	}
	return &leaf{dir: dir, fd: fd, events: events}, nil
}

// put takes back the leaf of a script that has exited: kept for the next script when nothing
// runs in it any more and it was never killed, otherwise killed and removed once what was left
// has gone.
func (c *cgroups) put(l *leaf) {
	if !l.killed.Load() && !l.populated() {
		c.mu.Lock()
		if !c.closed {
			c.free = append(c.free, l)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	l.release()
	go func() {
		_ = killCgroup(l.dir)
		removeCgroup(l.dir, 10*time.Second)
	}()
}

// close kills whatever is left in the runner's cgroups and removes them.
func (c *cgroups) close() {
	c.mu.Lock()
	c.closed = true
	free := c.free
	c.free = nil
	c.mu.Unlock()
	for _, l := range free {
		l.release()
	}
	_ = killCgroup(c.dir)
	removeCgroupTree(c.dir, 5*time.Second)
}

// killCgroup sends SIGKILL to every process in cgroup dir and its descendants.
func killCgroup(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// signalCgroup sends sig to every process in cgroup dir (not its descendants: a device's leaf
// has none).
func signalCgroup(dir string, sig syscall.Signal) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if pid, err := strconv.Atoi(sc.Text()); err == nil && pid > 1 {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// removeCgroupTree removes cgroup dir and its descendants, deepest first. A cgroup cannot be
// removed while a process in it is still exiting, so each removal is retried with backoff
// for up to patience.
func removeCgroupTree(dir string, patience time.Duration) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()), patience)
		}
	}
	removeCgroup(dir, patience)
}

// removeCgroup removes the empty cgroup dir, retrying while it is still busy.
func removeCgroup(dir string, patience time.Duration) {
	deadline := time.Now().Add(patience)
	delay := time.Millisecond
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// ownCgroup returns the directory of this process's own cgroup in the cgroup v2 hierarchy.
func ownCgroup() (string, error) {
	mount, root, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			// A mount of a part of the hierarchy shows paths relative to its own root.
			if root != "/" {
				p = strings.TrimPrefix(p, root)
			}
			return filepath.Join(mount, filepath.Clean("/"+p)), nil
		}
	}
	return "", errors.New("this process is in no cgroup v2")
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted, and which part of it, from
// /proc/self/mountinfo.
func cgroup2Mount() (mount, root string, err error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", "", fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		// Fields: id parent major:minor root mountpoint options [optional...] - fstype source super.
		before, after, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(after, "cgroup2 ") {
			continue
		}
		f := strings.Fields(before)
		if len(f) >= 5 {
			return unescapeMount(f[4]), unescapeMount(f[3]), nil
		}
	}
	return "", "", errors.New("no cgroup v2 hierarchy is mounted")
}

// unescapeMount undoes the octal escapes (\040 for a space) of a mountinfo path.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
