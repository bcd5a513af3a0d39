package localstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// CreateTask implements task.Store. The task, its device ids, its index entries and the
// idempotency record are written in one transaction, which is on disk when CreateTask returns.
// A second create with the same key waits for the first to commit and then replays it, so this
// store never answers CodeInProgress.
func (s *Store) CreateTask(ctx context.Context, t *task.Task, idem *task.IdempotencyRecord) (*task.Task, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if t == nil || t.ID == "" {
		return nil, false, task.Errorf(task.CodeInvalid, "a task needs an id")
	}
	now := s.now()
	var (
		replayed *task.Task
		created  bool
	)
	// Concurrent submits share one commit and one fsync (groupCommit); the function may run
	// more than once, so it starts from scratch each time.
	err := s.commits.do(func(tx *bolt.Tx) error {
		replayed, created = nil, false
		if idem != nil {
			prior, err := s.replay(tx, idem, now)
			if err != nil || prior != nil {
				replayed = prior
				return err
			}
		}
		tasks := tx.Bucket(bucketTasks)
		if tasks.Get([]byte(t.ID)) != nil {
			return task.Errorf(task.CodeConflict, "a task with id %s already exists", t.ID)
		}
		seq, err := tasks.NextSequence()
		if err != nil {
			return err
		}
		ids, err := json.Marshal(orEmpty(t.Request.DeviceIDs))
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketDeviceIDs).Put([]byte(t.ID), ids); err != nil {
			return err
		}
		if err := putRecord(tx, &record{Seq: seq, Task: t}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOwners).Put(ownerKey(t), nil); err != nil {
			return err
		}
		if t.RelaunchOf != "" {
			if err := tx.Bucket(bucketRelaunch).Put(relaunchKey(t), nil); err != nil {
				return err
			}
		}
		if !t.Status.Terminal() {
			if err := tx.Bucket(bucketActive).Put(activeKey(t), nil); err != nil {
				return err
			}
		}
		if !t.ExpiresAt.IsZero() {
			if err := tx.Bucket(bucketExpiry).Put(expiryKey(t.ExpiresAt, t.ID), nil); err != nil {
				return err
			}
		}
		if idem != nil {
			if err := putIdem(tx, idem, t.ID); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		if task.ErrorCode(err) == task.CodeInternal {
			return nil, false, fmt.Errorf("localstore: create task %s: %w", t.ID, err)
		}
		return nil, false, err
	}
	if !created {
		return replayed, false, nil
	}
	stored := *t
	stored.Request.DeviceIDs = slices.Clone(t.Request.DeviceIDs)
	return &stored, true, nil
}

// replay returns the task an earlier create with the same owner and key stored, nil when the
// key is free (never used, expired, or its task is gone), or CodeIdempotencyMismatch.
func (s *Store) replay(tx *bolt.Tx, idem *task.IdempotencyRecord, now time.Time) (*task.Task, error) {
	prior, err := loadIdem(tx, idem.Owner, idem.Key)
	if err != nil || prior == nil || idemExpired(prior, now) {
		return nil, err
	}
	if prior.RequestHash != idem.RequestHash {
		return nil, task.Errorf(task.CodeIdempotencyMismatch,
			"the Idempotency-Key was already used with a different request")
	}
	rec, err := s.loadLive(tx, prior.TaskID, now)
	if task.IsCode(err, task.CodeNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.full(tx, rec)
}

// GetTask implements task.Store with one key lookup.
func (s *Store) GetTask(ctx context.Context, id string) (*task.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	var t *task.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := s.records.load(tx, id)
		if err != nil {
			return err
		}
		if rec == nil || rec.Task.Expired(now) {
			return notFound(id)
		}
		t, err = s.full(tx, rec)
		return err
	})
	return t, err
}

// ListTasks implements task.Store. It walks an index backwards, newest first: the owner's part
// of the owners index, so it never reads another owner's tasks; for q.RelaunchOf, that task's
// part of the relaunches index; for an unfinished q.Status, the index of unfinished tasks. The
// cursor is the index key of the last task returned (preceded by the owner for the last).
func (s *Store) ListTasks(ctx context.Context, q task.ListQuery) (*task.TaskPage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := task.PageSize(q.Limit)
	bucket, prefix, kind := bucketOwners, ownerPrefix(q.Owner), byte(cursorTasks)
	// mark starts a cursor before the key it names, for keys that do not name the owner.
	var mark []byte
	switch {
	case q.RelaunchOf != "":
		bucket, prefix, kind = bucketRelaunch, relaunchPrefix(q.RelaunchOf), cursorRelaunches
	case q.Status != "" && !q.Status.Terminal():
		// Unfinished tasks are few beside the finished ones a server keeps: they are looked
		// for among the unfinished tasks of every owner, not among all of this owner's.
		bucket, prefix, kind, mark = bucketActive, nil, cursorActive, ownerPrefix(q.Owner)
	}
	var after []byte
	if q.Cursor != "" {
		body, err := decodeCursor(kind, q.Cursor)
		if err != nil || !bytes.HasPrefix(body, mark) || !bytes.HasPrefix(body[len(mark):], prefix) {
			return nil, task.BadCursor()
		}
		after = body[len(mark):]
	}
	now := s.now()
	page := &task.TaskPage{Tasks: []*task.Task{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var k []byte
		if after != nil {
			k = before(c, after)
		} else {
			k = before(c, prefixEnd(prefix))
		}
		var last []byte
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			// Through the record cache, as GetTask: a listing filtered by a finished status
			// passes over every task of the owner, and decoding each of them again on every
			// page was most of what a list cost.
			rec, err := s.records.load(tx, ownerKeyID(prefix, k))
			if err != nil {
				return err
			}
			if rec == nil || rec.Task.Expired(now) || rec.Task.Owner != q.Owner || (q.Status != "" && rec.Task.Status != q.Status) {
				continue
			}
			if len(page.Tasks) == limit {
				page.Next = encodeCursor(kind, append(bytes.Clone(mark), last...))
				return nil
			}
			t, err := s.full(tx, rec)
			if err != nil {
				return err
			}
			page.Tasks = append(page.Tasks, t)
			last = bytes.Clone(k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localstore: list tasks of %s: %w", q.Owner, err)
	}
	return page, nil
}

// before positions c on the last key smaller than key (the last key of all when key is nil)
// and returns it.
func before(c *bolt.Cursor, key []byte) []byte {
	if key == nil {
		k, _ := c.Last()
		return k
	}
	if k, _ := c.Seek(key); k == nil {
		k, _ = c.Last()
		return k
	}
	k, _ := c.Prev()
	return k
}

// Transition implements task.Store: the transition is checked against the state machine, and the
// status and version against the task, in the transaction that writes it.
func (s *Store) Transition(ctx context.Context, tr task.Transition) (*task.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := tr.Check(); err != nil {
		return nil, fmt.Errorf("localstore: transition %s: %w", tr.TaskID, err)
	}
	now := s.now()
	at := tr.At
	if at.IsZero() {
		at = now
	}
	var out *task.Task
	// Batched like submits; the function may run more than once and starts from scratch.
	err := s.commits.do(func(tx *bolt.Tx) error {
		out = nil
		rec, err := s.loadLive(tx, tr.TaskID, now)
		if err != nil {
			return err
		}
		t := rec.Task
		if t.Status != tr.From || t.Version != tr.Version {
			return &task.Error{Code: task.CodeConflict, Status: t.Status, Message: fmt.Sprintf(
				"task %s is %s at version %d, not %s at version %d", t.ID, t.Status, t.Version, tr.From, tr.Version)}
		}
		t.Status, t.Version, t.UpdatedAt = tr.To, t.Version+1, at
		if tr.Step != "" {
			t.CurrentStep = tr.Step
		}
		if tr.Starts() {
			t.StartedAt = new(at)
		}
		if tr.Ends() {
			if err := s.finish(tx, t, at, tr); err != nil {
				return err
			}
		}
		if err := putRecord(tx, rec); err != nil {
			return err
		}
		out, err = s.full(tx, rec)
		return err
	})
	if err != nil && task.ErrorCode(err) == task.CodeInternal {
		return nil, fmt.Errorf("localstore: transition %s to %s: %w", tr.TaskID, tr.To, err)
	}
	return out, err
}

// finish records a transition that ends a task: the result, the counts (task.End counts the
// devices that never started), the completion time and the expiry, and takes the task out of
// the active index.
func (s *Store) finish(tx *bolt.Tx, t *task.Task, at time.Time, tr task.Transition) error {
	t.CompletedAt = new(at)
	t.Counts = tr.Counts
	if tr.Result != nil {
		t.Result = tr.Result
	}
	if err := tx.Bucket(bucketActive).Delete(activeKey(t)); err != nil {
		return err
	}
	if tr.ExpiresAt.IsZero() {
		return nil
	}
	expiry := tx.Bucket(bucketExpiry)
	if !t.ExpiresAt.IsZero() {
		if err := expiry.Delete(expiryKey(t.ExpiresAt, t.ID)); err != nil {
			return err
		}
	}
	t.ExpiresAt = tr.ExpiresAt
	return expiry.Put(expiryKey(t.ExpiresAt, t.ID), nil)
}

// Active returns the tasks that are not in a terminal state (pending, running, cancelling),
// oldest first. `fleetrun serve` calls it on start to resume what a restart interrupted.
func (s *Store) Active(ctx context.Context) ([]*task.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*task.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketActive).ForEach(func(k, _ []byte) error {
			id := string(k[timeLen:])
			rec, err := loadRecord(tx, id)
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("the active index names task %s, which does not exist", id)
			}
			t, err := s.full(tx, rec)
			out = append(out, t)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("localstore: list active tasks: %w", err)
	}
	return out, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
