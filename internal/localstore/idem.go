package localstore

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// loadIdem reads the idempotency record of owner and key; nil when there is none.
func loadIdem(tx *bolt.Tx, owner, key string) (*task.IdempotencyRecord, error) {
	raw := tx.Bucket(bucketIdem).Get(idemKey(owner, key))
	if raw == nil {
		return nil, nil
	}
	rec, err := decodeIdem(raw)
	if err != nil {
		return nil, fmt.Errorf("localstore: decode idempotency record of %s: %w", owner, err)
	}
	return rec, nil
}

// idemExpired reports whether rec no longer holds its key at now. A record without an expiry
// holds it until the task it names is gone.
func idemExpired(rec *task.IdempotencyRecord, now time.Time) bool {
	return !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt)
}

// putIdem stores idem for the task taskID, replacing (and unindexing) an earlier record of the
// same owner and key.
func putIdem(tx *bolt.Tx, idem *task.IdempotencyRecord, taskID string) error {
	prior, err := loadIdem(tx, idem.Owner, idem.Key)
	if err != nil {
		return err
	}
	exp := tx.Bucket(bucketIdemExp)
	if prior != nil && !prior.ExpiresAt.IsZero() {
		if err := exp.Delete(idemExpiryKey(prior.ExpiresAt, prior.Owner, prior.Key)); err != nil {
			return err
		}
	}
	rec := *idem
	rec.TaskID = taskID
	raw, err := encodeIdem(&rec)
	if err != nil {
		return fmt.Errorf("localstore: encode idempotency record: %w", err)
	}
	if err := tx.Bucket(bucketIdem).Put(idemKey(rec.Owner, rec.Key), raw); err != nil {
		return err
	}
	if rec.ExpiresAt.IsZero() {
		return nil
	}
	return exp.Put(idemExpiryKey(rec.ExpiresAt, rec.Owner, rec.Key), nil)
}
