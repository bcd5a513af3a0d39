package localstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// record is a task as kept in the tasks bucket (taskFile). Its device ids live apart in the
// deviceids bucket, because they never change while the rest is rewritten on every device
// update: a 10,000-device task would otherwise rewrite 200 KB per update.
type record struct {
	// Seq is unique to this task record across the life of the file (see taskFile).
	Seq  uint64
	Task *task.Task
}

// loadRecord reads the record of task id, expired or not; nil when there is none.
func loadRecord(tx *bolt.Tx, id string) (*record, error) {
	raw := tx.Bucket(bucketTasks).Get([]byte(id))
	if raw == nil {
		return nil, nil
	}
	seq, t, err := decodeTask(raw)
	if err != nil {
		return nil, fmt.Errorf("localstore: decode task %s: %w", id, err)
	}
	if t.ID != id {
		return nil, fmt.Errorf("localstore: the record of task %s holds task %q", id, t.ID)
	}
	return &record{Seq: seq, Task: t}, nil
}

// loadLive reads the record of task id, and CodeNotFound when there is none or it has expired
// at now. The record is the caller's to change: it comes from the record cache, which keeps a
// task decoded once per version, with a task of its own (the fields writers change are values
// or are replaced whole, never changed in place).
func (s *Store) loadLive(tx *bolt.Tx, id string, now time.Time) (*record, error) {
	kept, err := s.records.load(tx, id)
	if err != nil {
		return nil, err
	}
	if kept == nil || kept.Task.Expired(now) {
		return nil, notFound(id)
	}
	t := *kept.Task
	return &record{Seq: kept.Seq, Task: &t}, nil
}

// putRecord writes rec without its device ids.
func putRecord(tx *bolt.Tx, rec *record) error {
	t := rec.Task
	raw, err := encodeTask(rec.Seq, t)
	if err != nil {
		return fmt.Errorf("localstore: encode task %s: %w", t.ID, err)
	}
	if err := tx.Bucket(bucketTasks).Put([]byte(t.ID), raw); err != nil {
		return fmt.Errorf("localstore: put task %s: %w", t.ID, err)
	}
	return nil
}

// full returns the task of rec with its device ids. The ids are the cached list itself, clipped
// so that an append makes a copy: copying 10,000 ids for every device update cost more than the
// update.
func (s *Store) full(tx *bolt.Tx, rec *record) (*task.Task, error) {
	list, err := s.deviceList(tx, rec)
	if err != nil {
		return nil, err
	}
	t := *rec.Task
	t.Request.DeviceIDs = slices.Clip(list.ids)
	return &t, nil
}

// deviceList is the device ids of one task with their positions. It never changes once built.
type deviceList struct {
	seq   uint64
	ids   []string
	index map[string]int
}

// deviceList returns the device ids of the task of rec, from the cache when it can.
func (s *Store) deviceList(tx *bolt.Tx, rec *record) (*deviceList, error) {
	id := rec.Task.ID
	if l := s.lists.get(id, rec.Seq); l != nil {
		return l, nil
	}
	raw := tx.Bucket(bucketDeviceIDs).Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("localstore: task %s has no device list", id)
	}
	l := &deviceList{seq: rec.Seq}
	if err := json.Unmarshal(raw, &l.ids); err != nil {
		return nil, fmt.Errorf("localstore: decode device ids of %s: %w", id, err)
	}
	l.index = make(map[string]int, len(l.ids))
	for i, d := range l.ids {
		l.index[d] = i
	}
	s.lists.put(id, l)
	return l, nil
}

// maxCachedDeviceIDs bounds the device ids held in memory. Every device update needs its task's
// list to check membership and to return the task, and decoding 10,000 ids for each would
// cost more than the update itself.
const maxCachedDeviceIDs = 200_000

// listCache keeps the device lists of recently used tasks.
type listCache struct {
	mu    sync.Mutex
	lists map[string]*deviceList
	size  int
	limit int
}

func newListCache(limit int) *listCache {
	return &listCache{lists: make(map[string]*deviceList), limit: limit}
}

func (c *listCache) get(id string, seq uint64) *deviceList {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.lists[id]; l != nil && l.seq == seq {
		return l
	}
	return nil
}

func (c *listCache) put(id string, l *deviceList) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
	// Evict whatever map order gives first: any entry can be rebuilt from the file.
	for other := range c.lists {
		if c.size+len(l.ids) <= c.limit {
			break
		}
		c.dropLocked(other)
	}
	c.lists[id] = l
	c.size += len(l.ids)
}

func (c *listCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
}

func (c *listCache) dropLocked(id string) {
	if l, ok := c.lists[id]; ok {
		c.size -= len(l.ids)
		delete(c.lists, id)
	}
}
