package localrun

import (
	"context"
	"os"
	"path/filepath"
)

// Prune removes the working directories and kept output of every task for which exists
// reports false: the tasks the store has forgotten after their retention. The store deletes
// records, not files; `fleetrun serve` calls Prune after each sweep of expired tasks. A task
// this process is running is never pruned.
func (r *Runner) Prune(ctx context.Context, exists func(ctx context.Context, taskID string) (bool, error)) (int, error) {
	removed := 0
	seen := make(map[string]bool)
	for _, kind := range []string{"output", "work"} {
		entries, err := os.ReadDir(filepath.Join(r.cfg.DataDir, kind))
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return removed, err
		}
		for _, e := range entries {
			id := e.Name()
			if !e.IsDir() || !safeElement(id) || r.running(id) {
				continue
			}
			keep, ok := seen[id]
			if !ok {
				if keep, err = exists(ctx, id); err != nil {
					return removed, err
				}
				seen[id] = keep
				if !keep {
					removed++
				}
			}
			if !keep {
				if err := os.RemoveAll(filepath.Join(r.cfg.DataDir, kind, id)); err != nil {
					return removed, err
				}
			}
		}
	}
	return removed, nil
}

// running reports whether this process is running task id.
func (r *Runner) running(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.runs[id]
	return ok
}
