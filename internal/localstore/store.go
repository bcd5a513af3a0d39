// Package localstore is fleetrun's embedded store: task.Store in one file on the local disk,
// for `fleetrun serve`.
//
// It is built on bbolt (go.etcd.io/bbolt) because bbolt is pure Go, so the binary still builds
// with CGO_ENABLED=0 like the Lambda functions; it keeps everything in a single file that is
// easy to back up or delete; and its transactions are ACID, with an fsync on every commit, so a
// task that CreateTask has returned survives a crash. bbolt allows one writer at a time, which
// suits a store owned by one process, and it takes a file lock so that a second process cannot
// open the same file. SQLite would have needed cgo, or a large pure-Go port, for none of the
// SQL this store has no use for.
//
// Layout (one bucket each):
//
//	tasks      task id → the task as JSON, without its device ids
//	deviceids  task id → the task's device ids as JSON, in request order; never changes
//	devices    task id + device id → the device as JSON, written on its first update only
//	owners     owner + createdAt + task id → nothing; listing newest first walks it backwards
//	relaunches relaunched task id + createdAt + task id → nothing, for every task that relaunched
//	           another, walked backwards like owners
//	active     createdAt + task id → nothing, for every task not yet terminal
//	expiry     expiresAt + task id → nothing, for every task with an expiry
//	idem       owner + key → the idempotency record as JSON
//	idemexp    expiresAt + owner + key → nothing
//	deliveries task id + event time + event id + attempt → one webhook delivery attempt as JSON
//	hooks      event id → a webhook event waiting in the outbox, as JSON
//	hookdue    due time + event id → nothing, for every event in the outbox
//
// Strings inside a key are preceded by their length, so keys made of several strings never
// collide; times are big-endian so that keys sort by time.
package localstore

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Now is the store's clock. Reads use it to treat expired tasks as gone before
	// DeleteExpired removes them. It defaults to time.Now.
	Now func() time.Time
	// Logger receives the store's few log lines. It defaults to discarding them.
	Logger *slog.Logger
}

// Store is a task.Store kept in a bbolt file. It is safe for concurrent use; only one Store
// (in one process) can have a file open at a time.
//
// A task's Request never changes, so the tasks a Store returns share their Request.DeviceIDs
// with each other and with the store's cache, and the tasks GetTask returns share what their
// fields point to (the Request's slices, the Result, the times) with the record cache: callers
// must not modify them in place.
type Store struct {
	db    *bolt.DB
	now   func() time.Time
	log   *slog.Logger
	lists *listCache
	// records keeps decoded task records for GetTask.
	records *recordCache
	// commits lets concurrent submits, transitions and device updates share commits.
	commits *groupCommit
}

var _ task.Store = (*Store)(nil)

var (
	bucketMeta      = []byte("meta")
	bucketTasks     = []byte("tasks")
	bucketDeviceIDs = []byte("deviceids")
	bucketDevices   = []byte("devices")
	bucketOwners    = []byte("owners")
	bucketRelaunch  = []byte("relaunches")
	bucketActive    = []byte("active")
	bucketExpiry    = []byte("expiry")
	bucketIdem      = []byte("idem")
	bucketIdemExp   = []byte("idemexp")
	bucketDelivery  = []byte("deliveries")
	bucketHooks     = []byte("hooks")
	bucketHookDue   = []byte("hookdue")
)

// schemaVersion is written into a new file and checked on open, so that a file written by a
// future layout is refused rather than misread.
//
// Version 2 added what version 1 files lack and read as empty: a request's notify, targets
// and delivery timeout, a task's relaunchOf, a device's cancelRequestedAt, and the relaunches,
// deliveries and outbox buckets (created empty on open, as every bucket is). So a version 1
// file is taken as it is and marked version 2 on open.
const schemaVersion = "2"

// readableVersions are the older layouts this build reads as they are.
var readableVersions = []string{"1"}

// initialMmapSize is the address space the file is mapped into at first. bbolt maps the file
// again as it grows, and every read waits while it does: mapping a large region from the start
// (address space, not memory) spares status reads those pauses during a burst of writes.
const initialMmapSize = 256 << 20

// lockTimeout is how long Open waits for another process to release the file.
const lockTimeout = time.Second

// Open opens the store in the file at path, creating it if needed.
func Open(path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, InitialMmapSize: initialMmapSize})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("localstore: open %s: the file is in use by another process: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("localstore: open %s: %w", path, err)
	}
	if err := db.Update(initialize); err != nil {
		db.Close()
		return nil, fmt.Errorf("localstore: open %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, log: opts.Logger, lists: newListCache(maxCachedDeviceIDs), records: newRecordCache(maxCachedRecordBytes),
		commits: &groupCommit{db: db}}
	s.log.Debug("store opened", "path", path)
	return s, nil
}

func initialize(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketTasks, bucketDeviceIDs, bucketDevices, bucketOwners,
		bucketRelaunch, bucketActive, bucketExpiry, bucketIdem, bucketIdemExp, bucketDelivery, bucketHooks, bucketHookDue} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	switch v := meta.Get([]byte("schema")); {
	case v == nil, slices.Contains(readableVersions, string(v)):
		return meta.Put([]byte("schema"), []byte(schemaVersion))
	case string(v) != schemaVersion:
		return fmt.Errorf("the file has layout version %s; this build reads version %s", v, schemaVersion)
	}
	return nil
}

// Close closes the file. Calls that are running finish first.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("localstore: close: %w", err)
	}
	return nil
}

func notFound(id string) error {
	return task.Errorf(task.CodeNotFound, "no task %s", id)
}
