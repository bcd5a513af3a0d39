package localstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// ApplyDeviceUpdates implements task.Store. The devices, the task's counts and its version are
// written in one transaction. The version rises by one for each call that applied at least one
// update, whatever the number applied.
//
// Calls made at the same moment share a transaction (bbolt's Batch), so a runner reporting many
// devices at once pays for one fsync, not one per device.
func (s *Store) ApplyDeviceUpdates(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	now := s.now()
	if t, err := s.unchanged(taskID, updates, now); err != nil || t != nil {
		return t, 0, err
	}
	return s.apply(taskID, updates, now)
}

// apply writes the updates that still apply, checking each again in the write transaction:
// another writer may have moved a device, or ended the task, since unchanged looked.
func (s *Store) apply(taskID string, updates []task.DeviceUpdate, now time.Time) (*task.Task, int, error) {
	var (
		out     *task.Task
		applied int
	)
	// Batch may run this function more than once, so it starts from scratch each time.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		out, applied = nil, 0
		rec, err := loadLive(tx, taskID, now)
		if err != nil {
			return err
		}
		list, err := s.deviceList(tx, rec)
		if err != nil {
			return err
		}
		t := rec.Task
		if !t.Status.Terminal() {
			if applied, err = applyUpdates(tx, t, list, updates, now); err != nil {
				return err
			}
		}
		if applied > 0 {
			t.Version++
			t.UpdatedAt = now
			if err := putRecord(tx, rec); err != nil {
				return err
			}
		}
		out, err = s.full(tx, rec)
		return err
	})
	if err != nil && task.ErrorCode(err) == task.ErrInternal {
		return nil, 0, fmt.Errorf("localstore: apply %d device updates to %s: %w", len(updates), taskID, err)
	}
	return out, applied, err
}

// unchanged returns the task when none of the updates can apply to it, and nil when some may.
// It only reads: an update that cannot apply now never will, because devices only move forward
// and a terminal task stays terminal, so a batch of duplicates costs no write and no fsync.
func (s *Store) unchanged(taskID string, updates []task.DeviceUpdate, now time.Time) (*task.Task, error) {
	var out *task.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := loadLive(tx, taskID, now)
		if err != nil {
			return err
		}
		list, err := s.deviceList(tx, rec)
		if err != nil {
			return err
		}
		if !rec.Task.Status.Terminal() {
			devices := tx.Bucket(bucketDevices)
			for _, u := range updates {
				if _, ok := list.index[u.DeviceID]; !ok {
					continue
				}
				d, err := loadDevice(devices, deviceKey(taskID, u.DeviceID), rec.Task, u.DeviceID)
				if err != nil || d.Status.CanMove(u.Status) {
					return err
				}
			}
		}
		out, err = s.full(tx, rec)
		return err
	})
	if err != nil && task.ErrorCode(err) == task.ErrInternal {
		return nil, fmt.Errorf("localstore: read %s before applying updates: %w", taskID, err)
	}
	return out, err
}

// applyUpdates writes each update that moves its device forward and adjusts t's counts to
// match. It returns how many it applied.
func applyUpdates(tx *bolt.Tx, t *task.Task, list *deviceList, updates []task.DeviceUpdate, now time.Time) (int, error) {
	devices := tx.Bucket(bucketDevices)
	applied := 0
	for _, u := range updates {
		if _, ok := list.index[u.DeviceID]; !ok {
			continue
		}
		key := deviceKey(t.ID, u.DeviceID)
		d, err := loadDevice(devices, key, t, u.DeviceID)
		if err != nil {
			return 0, err
		}
		if !d.Status.CanMove(u.Status) {
			continue
		}
		t.Counts.Add(d.Status, -1)
		t.Counts.Add(u.Status, 1)
		merge(d, u, now)
		raw, err := json.Marshal(d)
		if err != nil {
			return 0, fmt.Errorf("encode device %s: %w", u.DeviceID, err)
		}
		if err := devices.Put(key, raw); err != nil {
			return 0, err
		}
		applied++
	}
	return applied, nil
}

// merge moves d to u's status and takes what u reports. Empty fields of u leave d's as they
// were, so that a terminal update without a Ref keeps the Ref of the running one.
func merge(d *task.Device, u task.DeviceUpdate, now time.Time) {
	at := u.At
	if at.IsZero() {
		at = now
	}
	d.Status = u.Status
	if u.Status == task.DeviceRunning {
		d.StartedAt = new(at)
	}
	if u.Status.Terminal() {
		d.CompletedAt = new(at)
	}
	if u.ExitCode != nil {
		d.ExitCode = new(*u.ExitCode)
	}
	if u.Stdout != "" {
		d.Stdout = u.Stdout
	}
	if u.Stderr != "" {
		d.Stderr = u.Stderr
	}
	d.StdoutTruncated = d.StdoutTruncated || u.StdoutTruncated
	d.StderrTruncated = d.StderrTruncated || u.StderrTruncated
	if u.Reason != "" {
		d.Reason = u.Reason
	}
	if u.Ref != "" {
		d.Ref = u.Ref
	}
}

// loadDevice reads a device's record, or t.Unstarted when it has none yet.
func loadDevice(devices *bolt.Bucket, key []byte, t *task.Task, deviceID string) (*task.Device, error) {
	taskID := t.ID
	raw := devices.Get(key)
	if raw == nil {
		return t.Unstarted(deviceID), nil
	}
	var d task.Device
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("localstore: decode device %s of %s: %w", deviceID, taskID, err)
	}
	return &d, nil
}

// ListDevices implements task.Store. It walks the request's device ids from the cursor, which
// is the position of the next device to return.
func (s *Store) ListDevices(ctx context.Context, taskID string, q task.DeviceQuery) (*task.DevicePage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := task.PageSize(q.Limit)
	start := 0
	if q.Cursor != "" {
		b, err := decodeCursor(cursorDevices, q.Cursor)
		if err != nil || len(b) != 4 {
			return nil, badCursor()
		}
		start = int(binary.BigEndian.Uint32(b))
	}
	now := s.now()
	page := &task.DevicePage{Devices: []*task.Device{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := loadLive(tx, taskID, now)
		if err != nil {
			return err
		}
		list, err := s.deviceList(tx, rec)
		if err != nil {
			return err
		}
		if start > len(list.ids) {
			return badCursor()
		}
		devices := tx.Bucket(bucketDevices)
		for i := start; i < len(list.ids); i++ {
			id := list.ids[i]
			d, err := loadDevice(devices, deviceKey(taskID, id), rec.Task, id)
			if err != nil {
				return err
			}
			if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, d.Status) {
				continue
			}
			if len(page.Devices) == limit {
				page.Next = encodeCursor(cursorDevices, binary.BigEndian.AppendUint32(nil, uint32(i)))
				return nil
			}
			page.Devices = append(page.Devices, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// GetDevice implements task.Store.
func (s *Store) GetDevice(ctx context.Context, taskID, deviceID string) (*task.Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	var d *task.Device
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := loadLive(tx, taskID, now)
		if err != nil {
			return err
		}
		list, err := s.deviceList(tx, rec)
		if err != nil {
			return err
		}
		if _, ok := list.index[deviceID]; !ok {
			return task.Errorf(task.ErrNotFound, "task %s has no device %s", taskID, deviceID)
		}
		d, err = loadDevice(tx.Bucket(bucketDevices), deviceKey(taskID, deviceID), rec.Task, deviceID)
		return err
	})
	return d, err
}
