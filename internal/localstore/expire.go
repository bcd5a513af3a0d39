package localstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sweepChunk bounds the tasks removed in one transaction, so that a large sweep does not hold
// the writer (and grow the transaction) for long: each task may take 10,000 device records
// with it.
const sweepChunk = 64

// DeleteExpired implements task.Store. It walks the expiry indexes from the oldest entry, so it
// reads nothing that has not expired.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var deleted []string
		err := s.db.Update(func(tx *bolt.Tx) error {
			deleted = deleted[:0]
			for _, k := range due(tx.Bucket(bucketExpiry), now, sweepChunk) {
				id := string(k[timeLen:])
				if err := deleteTask(tx, id); err != nil {
					return fmt.Errorf("delete task %s: %w", id, err)
				}
				if err := tx.Bucket(bucketExpiry).Delete(k); err != nil {
					return err
				}
				deleted = append(deleted, id)
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("localstore: delete expired tasks: %w", err)
		}
		for _, id := range deleted {
			s.lists.drop(id)
		}
		total += len(deleted)
		if len(deleted) < sweepChunk {
			break
		}
	}
	keys, err := s.deleteExpiredKeys(now)
	if err != nil {
		return total, err
	}
	if total > 0 || keys > 0 {
		s.log.Debug("expired tasks deleted", "tasks", total, "idempotency_keys", keys)
	}
	return total, nil
}

// due returns up to n keys of an expiry index whose time is at or before now, oldest first.
func due(index *bolt.Bucket, now time.Time, n int) [][]byte {
	var keys [][]byte
	c := index.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < n; k, _ = c.Next() {
		if now.Before(readTime(k[:timeLen])) {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// deleteTask removes a task with everything that refers to it, except its expiry index entry.
func deleteTask(tx *bolt.Tx, id string) error {
	rec, err := loadRecord(tx, id)
	if err != nil || rec == nil {
		return err
	}
	t := rec.Task
	entries := []struct{ bucket, key []byte }{
		{bucketTasks, []byte(id)},
		{bucketDeviceIDs, []byte(id)},
		{bucketOwners, ownerKey(t)},
		{bucketActive, activeKey(t)},
	}
	if t.RelaunchOf != "" {
		entries = append(entries, struct{ bucket, key []byte }{bucketRelaunch, relaunchKey(t)})
	}
	for _, entry := range entries {
		if err := tx.Bucket(entry.bucket).Delete(entry.key); err != nil {
			return err
		}
	}
	// The devices and the delivery records of a task share the task's prefix.
	for _, name := range [][]byte{bucketDevices, bucketDelivery} {
		if err := deletePrefix(tx.Bucket(name), devicePrefix(id)); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix deletes every key of b that starts with prefix. Deleting while a bbolt cursor
// walks can skip keys, so it collects them first.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteExpiredKeys removes the idempotency records that expired at or before now.
func (s *Store) deleteExpiredKeys(now time.Time) (int, error) {
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			index, idem := tx.Bucket(bucketIdemExp), tx.Bucket(bucketIdem)
			for _, k := range due(index, now, 1000) {
				if err := idem.Delete(k[timeLen:]); err != nil {
					return err
				}
				if err := index.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("localstore: delete expired idempotency keys: %w", err)
		}
		total += n
		if n < 1000 {
			return total, nil
		}
	}
}
