package localstore

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit lets concurrent writes share a transaction and its fsync: every write queued
// while a commit is under way goes into the next one, whatever their number, and a write
// that finds no commit under way starts one at once. bbolt's own Batch gathers only the
// writes of a fixed window (a millisecond) into each transaction, so under load its
// transactions stayed small and queued on the writer lock one behind the other, and every
// step of every task waited in that queue.
//
// As with bbolt's Batch, a write may run more than once, so it must start from scratch each
// time; a write that fails is run again alone, so that its error is its own and the others
// of its group still commit.
type groupCommit struct {
	db      *bolt.DB
	mu      sync.Mutex
	queue   []*write
	leading bool
}

// write is one queued write and where its outcome goes.
type write struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// do runs fn in a write transaction shared with the writes queued beside it, and returns once
// that transaction has committed (or fn failed).
func (g *groupCommit) do(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if lead {
		g.lead(w)
	}
	return <-w.done
}

// lead commits the queued writes group after group until own's is done, then hands the
// lead on to a goroutine of its own if writes are still queued, so that no caller waits
// for more than the commits its write needed.
func (g *groupCommit) lead(own *write) {
	for {
		g.mu.Lock()
		group := g.queue
		g.queue = nil
		if len(group) == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.commit(group)
		if own != nil && len(own.done) > 0 {
			g.mu.Lock()
			more := len(g.queue) > 0
			if !more {
				g.leading = false
			}
			g.mu.Unlock()
			if more {
				go g.lead(nil)
			}
			return
		}
	}
}

// commit runs a group's writes in one transaction. When one fails, the transaction is rolled
// back, that write runs alone for its own outcome, and the others are committed again.
func (g *groupCommit) commit(group []*write) {
	for len(group) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, w := range group {
				if err := safely(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range group {
				w.done <- err // nil, or the commit's own failure, which is every write's
			}
			return
		}
		alone := group[failed]
		alone.done <- g.db.Update(func(tx *bolt.Tx) error { return safely(alone.fn, tx) })
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// errPanicked marks a write that panicked.
var errPanicked = errors.New("localstore: a write panicked")

// safely runs fn, turning a panic into an error, so that one write cannot take down the
// others of its group.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanicked, p)
		}
	}()
	return fn(tx)
}
