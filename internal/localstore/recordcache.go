package localstore

import (
	"bytes"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxCachedRecordBytes bounds the records kept, counted by their encoded size (the decoded
// ones take about as much again): about 16,000 tasks' worth.
const maxCachedRecordBytes = 16 << 20

// recordCache keeps the decoded record of each task GetTask read lately, with the bytes it
// was decoded from. A read compares the bytes in the file with those: equal bytes are the same
// record, so a task that did not change is not decoded again, and any write, whoever made it,
// changes the bytes and so is never missed. Decoding a task's JSON was most of the cost of a
// status read.
//
// Only GetTask uses it: its callers read the task and never modify it in place, while the
// write paths change the record they load.
type recordCache struct {
	mu      sync.Mutex
	records map[string]cachedRecord
	size    int // bytes of the raw records kept
	limit   int
}

type cachedRecord struct {
	raw []byte
	rec *record
}

func newRecordCache(limit int) *recordCache {
	return &recordCache{records: map[string]cachedRecord{}, limit: limit}
}

// load returns the record of task id as the file holds it in tx, or nil when there is none.
func (c *recordCache) load(tx *bolt.Tx, id string) (*record, error) {
	raw := tx.Bucket(bucketTasks).Get([]byte(id))
	if raw == nil {
		return nil, nil
	}
	c.mu.Lock()
	kept, ok := c.records[id]
	c.mu.Unlock()
	if ok && bytes.Equal(kept.raw, raw) {
		return kept.rec, nil
	}
	rec, err := loadRecord(tx, id)
	if err != nil || rec == nil {
		return rec, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.records[id]
	c.size += len(raw) - len(old.raw)
	for other, r := range c.records { // any others: they are decoded again when read
		if c.size <= c.limit {
			break
		}
		if other != id {
			delete(c.records, other)
			c.size -= len(r.raw)
		}
	}
	// raw lives in the file's memory map only as long as tx: keep a copy.
	c.records[id] = cachedRecord{raw: bytes.Clone(raw), rec: rec}
	return rec, nil
}
