package localstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// RecordDelivery implements task.Store: the task's existence and the attempt's record are read
// and the record written in one transaction.
func (s *Store) RecordDelivery(ctx context.Context, d task.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := loadLive(tx, d.TaskID, now); err != nil {
			return err
		}
		b := tx.Bucket(bucketDelivery)
		k := deliveryKey(&d)
		if raw := b.Get(k); raw != nil {
			old, err := decodeDelivery(raw)
			if err != nil {
				return fmt.Errorf("decode delivery %s attempt %d: %w", d.EventID, d.Attempt, err)
			}
			if !replaces(d, old) {
				return &task.Error{Code: task.CodeConflict,
					Message: fmt.Sprintf("attempt %d of %s is already %s", d.Attempt, d.EventID, old.Outcome)}
			}
		}
		raw, err := encodeDelivery(&d)
		if err != nil {
			return err
		}
		return b.Put(k, raw)
	})
	if err != nil && task.ErrorCode(err) == task.CodeInternal {
		return fmt.Errorf("localstore: record delivery %s attempt %d: %w", d.EventID, d.Attempt, err)
	}
	return err
}

// replaces reports whether record d may replace old, the record of the same attempt (see
// task.Store.RecordDelivery): an outcome replaces a claim, and a claim replaces an abandoned one.
func replaces(d task.Delivery, old *task.Delivery) bool {
	if old.Outcome != task.DeliverySending {
		return false
	}
	return d.Outcome != task.DeliverySending || !old.At.After(d.At.Add(-task.DeliveryClaimTimeout))
}

// ListDeliveries implements task.Store. The cursor is the key of the last record returned.
func (s *Store) ListDeliveries(ctx context.Context, taskID string, q task.DeliveryQuery) (*task.DeliveryPage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := task.PageSize(q.Limit)
	prefix := devicePrefix(taskID)
	if q.EventID != "" {
		prefix = deliveryEventPrefix(taskID, q.EventAt, q.EventID)
	}
	start := prefix
	if q.Cursor != "" {
		after, err := decodeCursor(cursorDeliveries, q.Cursor)
		if err != nil || !bytes.HasPrefix(after, prefix) {
			return nil, task.BadCursor()
		}
		start = append(bytes.Clone(after), 0)
	}
	page := &task.DeliveryPage{Deliveries: []*task.Delivery{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDelivery).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(page.Deliveries) == limit {
				page.Next = encodeCursor(cursorDeliveries, deliveryKey(page.Deliveries[limit-1]))
				return nil
			}
			d, err := decodeDelivery(v)
			if err != nil {
				return fmt.Errorf("localstore: decode a delivery of %s: %w", taskID, err)
			}
			page.Deliveries = append(page.Deliveries, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// The outbox: webhook events waiting to be delivered by `fleetrun serve`'s delivery loop, kept
// in the same file as the tasks, so that an event written before a crash is delivered after
// the restart. The store only keeps the jobs; the loop decides what becomes of them.

// AddWebhook puts job in the outbox, due at job.NextAt, and reports true; when the outbox
// already holds a job with its id it changes nothing and reports false, so that an event the
// engine hands over twice (a resumed task) stays one job with its progress.
func (s *Store) AddWebhook(ctx context.Context, job task.WebhookJob) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	added := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		added = false
		if tx.Bucket(bucketHooks).Get([]byte(job.ID)) != nil {
			return nil
		}
		added = true
		return putHook(tx, &job)
	})
	if err != nil {
		return false, fmt.Errorf("localstore: add webhook %s: %w", job.ID, err)
	}
	return added, nil
}

// UpdateWebhook replaces the job with job's id (its attempts, payload and next time) and
// re-indexes it by job.NextAt. A job that is no longer in the outbox is not put back.
func (s *Store) UpdateWebhook(ctx context.Context, job task.WebhookJob) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, err := loadHook(tx, job.ID)
		if err != nil || old == nil {
			return err
		}
		if err := tx.Bucket(bucketHookDue).Delete(hookDueKey(old.NextAt, old.ID)); err != nil {
			return err
		}
		return putHook(tx, &job)
	})
	if err != nil {
		return fmt.Errorf("localstore: update webhook %s: %w", job.ID, err)
	}
	return nil
}

// RemoveWebhook takes the job with id out of the outbox; removing one that is not there is not
// an error.
func (s *Store) RemoveWebhook(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, err := loadHook(tx, id)
		if err != nil || old == nil {
			return err
		}
		if err := tx.Bucket(bucketHookDue).Delete(hookDueKey(old.NextAt, id)); err != nil {
			return err
		}
		return tx.Bucket(bucketHooks).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("localstore: remove webhook %s: %w", id, err)
	}
	return nil
}

// DueWebhooks returns up to n jobs due at or before now, the soonest first, and when the next
// job after them is due (zero when the outbox holds no other).
func (s *Store) DueWebhooks(ctx context.Context, now time.Time, n int) ([]task.WebhookJob, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	var (
		jobs []task.WebhookJob
		next time.Time
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHookDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			due := readTime(k[:timeLen])
			if due.After(now) || len(jobs) == n {
				next = due
				return nil
			}
			job, err := loadHook(tx, string(k[timeLen:]))
			if err != nil {
				return err
			}
			if job != nil {
				jobs = append(jobs, *job)
			}
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("localstore: due webhooks: %w", err)
	}
	return jobs, next, nil
}

func loadHook(tx *bolt.Tx, id string) (*task.WebhookJob, error) {
	raw := tx.Bucket(bucketHooks).Get([]byte(id))
	if raw == nil {
		return nil, nil
	}
	job, err := decodeHook(raw)
	if err != nil {
		return nil, fmt.Errorf("decode webhook %s: %w", id, err)
	}
	return job, nil
}

func putHook(tx *bolt.Tx, job *task.WebhookJob) error {
	raw, err := encodeHook(job)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketHooks).Put([]byte(job.ID), raw); err != nil {
		return err
	}
	return tx.Bucket(bucketHookDue).Put(hookDueKey(job.NextAt, job.ID), nil)
}
