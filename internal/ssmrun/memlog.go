package ssmrun

import (
	"context"
	"maps"
	"sync"

	"github.com/fleetrun/fleetrun/internal/task"
)

// MemoryLog is a CommandLog kept in memory, for tests and single-process use. It is safe for
// concurrent use.
type MemoryLog struct {
	mu     sync.Mutex
	tasks  map[string]map[int]string
	owners map[string]string
}

// NewMemoryLog returns an empty MemoryLog.
func NewMemoryLog() *MemoryLog {
	return &MemoryLog{tasks: map[string]map[int]string{}, owners: map[string]string{}}
}

// RecordCommand implements CommandLog.
func (l *MemoryLog) RecordCommand(_ context.Context, taskID string, batch int, commandID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if have, ok := l.tasks[taskID][batch]; ok {
		if have == commandID {
			return nil
		}
		return task.Errorf(task.CodeConflict, "batch %d of task %s already has command %s", batch, taskID, have)
	}
	if l.tasks[taskID] == nil {
		l.tasks[taskID] = map[int]string{}
	}
	l.tasks[taskID][batch] = commandID
	l.owners[commandID] = taskID
	return nil
}

// Commands implements CommandLog.
func (l *MemoryLog) Commands(_ context.Context, taskID string) (map[int]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := maps.Clone(l.tasks[taskID])
	if out == nil {
		out = map[int]string{}
	}
	return out, nil
}

// TaskForCommand implements CommandLog.
func (l *MemoryLog) TaskForCommand(_ context.Context, commandID string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id, ok := l.owners[commandID]
	if !ok {
		return "", task.Errorf(task.CodeNotFound, "no task sent command %s", commandID)
	}
	return id, nil
}
