package localrun

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultMaxProcs returns the default cap on scripts running at once across every task of one
// server: 128 per CPU, but at most an eighth of the open-file limit (the server holds a few
// descriptors for every running script) and a quarter of the process limit (a script is at
// least one process, and often starts more), and never less than 1.
func DefaultMaxProcs() int {
	n := 128 * runtime.NumCPU()
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur != unix.RLIM_INFINITY {
		n = min(n, int(min(lim.Cur/8, 1<<20)))
	}
	if unix.Getrlimit(unix.RLIMIT_NPROC, &lim) == nil && lim.Cur != unix.RLIM_INFINITY {
		n = min(n, int(min(lim.Cur/4, 1<<20)))
	}
	return max(n, 1)
}

// pool is the server-wide cap on running scripts. It is shared fairly by the runs that wait for
// it: slots are handed out in the order they were asked for, and a run asks for one slot at a
// time (the next only once it holds the last), so runs waiting together take turns and a task
// of 10,000 devices cannot starve one of 3.
type pool struct {
	mu      sync.Mutex
	free    int
	waiting []chan struct{} // closed when granted, in the order asked
}

func newPool(size int) *pool { return &pool{free: size} }

// tryAcquire takes a slot if one is free and nobody is waiting for one.
func (p *pool) tryAcquire() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free > 0 && len(p.waiting) == 0 {
		p.free--
		return true
	}
	return false
}

// acquire waits for a slot, in turn, until stop is closed. It reports whether it got one.
func (p *pool) acquire(stop <-chan struct{}) bool {
	if p.tryAcquire() {
		return true
	}
	p.mu.Lock()
	turn := make(chan struct{})
	p.waiting = append(p.waiting, turn)
	p.mu.Unlock()
	select {
	case <-turn:
		return true
	case <-stop:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.waiting {
		if c == turn {
			p.waiting = append(p.waiting[:i], p.waiting[i+1:]...)
			return false
		}
	}
	// The slot was granted while stop closed: hand it on.
	p.releaseLocked()
	return false
}

// release returns a slot, to the longest waiter if there is one.
func (p *pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked()
}

func (p *pool) releaseLocked() {
	if len(p.waiting) > 0 {
		close(p.waiting[0])
		p.waiting = p.waiting[1:]
		return
	}
	p.free++
}
