package localstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestGroupCommitSharesTransactions: writes queued while a commit is under way share the next
// transaction; a write that fails gets its own error and the others of its group commit
// anyway; a write that panics fails alone.
func TestGroupCommitSharesTransactions(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g := &groupCommit{db: db}
	if err := g.do(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	const writers = 200
	var mu sync.Mutex
	txs := map[int]bool{}
	boom := errors.New("refused")
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			errs[i] = g.do(func(tx *bolt.Tx) error {
				mu.Lock()
				txs[tx.ID()] = true
				mu.Unlock()
				switch i {
				case 7:
					return boom
				case 11:
					panic("a bug")
				}
				return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%03d", i), []byte("v"))
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i == 7 && !errors.Is(err, boom), i == 11 && !errors.Is(err, errPanicked):
			t.Errorf("write %d: %v", i, err)
		case i != 7 && i != 11 && err != nil:
			t.Errorf("write %d failed with its group: %v", i, err)
		}
	}
	stored := 0
	_ = db.View(func(tx *bolt.Tx) error { stored = tx.Bucket([]byte("b")).Stats().KeyN; return nil })
	if stored != writers-2 {
		t.Errorf("%d keys stored, want %d", stored, writers-2)
	}
	if len(txs) >= writers/2 {
		t.Errorf("%d concurrent writes took %d transactions; they should share them", writers, len(txs))
	}
	t.Logf("%d writes in %d transactions", writers, len(txs))
}
