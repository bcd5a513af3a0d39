package localstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// MarkPublished implements task.Store: it sets the flag on a terminal task without changing its
// version, since nothing a caller sees has changed.
func (s *Store) MarkPublished(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	err := s.commits.do(func(tx *bolt.Tx) error {
		rec, err := s.loadLive(tx, id, now)
		if err != nil {
			return err
		}
		if !rec.Task.Status.Terminal() {
			return &task.Error{Code: task.CodeConflict, Status: rec.Task.Status,
				Message: fmt.Sprintf("task %s is %s, not finished", id, rec.Task.Status)}
		}
		if rec.Task.Published {
			return nil
		}
		rec.Task.Published = true
		return putRecord(tx, rec)
	})
	if err != nil && task.ErrorCode(err) == task.CodeInternal {
		return fmt.Errorf("localstore: mark task %s published: %w", id, err)
	}
	return err
}
