package localstore

import (
	"context"
	"encoding/binary"
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
		rec, list, err := s.liveList(tx, taskID, now)
		if err != nil {
			return err
		}
		t := rec.Task
		if t.Status.Terminal() {
			// Only longer copies of ended devices' output; the task does not change.
			if applied, err = refreshEnded(tx, t, list, updates); err != nil {
				return err
			}
			out, err = s.full(tx, rec)
			return err
		}
		if applied, err = applyUpdates(tx, t, list, updates, now); err != nil {
			return err
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
	if err != nil && task.ErrorCode(err) == task.CodeInternal {
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
		rec, list, err := s.liveList(tx, taskID, now)
		if err != nil {
			return err
		}
		devices := tx.Bucket(bucketDevices)
		ended := rec.Task.Status.Terminal()
		for _, u := range updates {
			if _, ok := list.index[u.DeviceID]; !ok {
				continue
			}
			key := deviceKey(taskID, u.DeviceID)
			if ended && devices.Get(key) == nil {
				continue // a device that never started stays as it is
			}
			d, err := loadDevice(devices, key, rec.Task, u.DeviceID)
			if err != nil {
				return err
			}
			if ended && d.ApplyEnded(u) != task.Ignored || !ended && d.Apply(u, now) != task.Ignored {
				return nil
			}
		}
		out, err = s.full(tx, rec)
		return err
	})
	if err != nil && task.ErrorCode(err) == task.CodeInternal {
		return nil, fmt.Errorf("localstore: read %s before applying updates: %w", taskID, err)
	}
	return out, err
}

// applyUpdates writes each update that changes its device (task.Device.Apply) and adjusts t's
// counts to match. It returns how many it applied.
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
		from := d.Status
		if d.Apply(u, now) == task.Ignored {
			continue
		}
		t.Counts.Add(from, -1)
		t.Counts.Add(d.Status, 1)
		if err := putDevice(devices, key, d); err != nil {
			return 0, err
		}
		applied++
	}
	return applied, nil
}

// putDevice writes device d's record under key.
func putDevice(devices *bolt.Bucket, key []byte, d *task.Device) error {
	raw, err := encodeDevice(d)
	if err != nil {
		return fmt.Errorf("encode device %s: %w", d.ID, err)
	}
	return devices.Put(key, raw)
}

// refreshEnded writes the longer copies of output that the updates bring for devices of ended
// task t (task.Device.ApplyEnded). Devices that never started have no record and stay so.
func refreshEnded(tx *bolt.Tx, t *task.Task, list *deviceList, updates []task.DeviceUpdate) (int, error) {
	devices := tx.Bucket(bucketDevices)
	applied := 0
	for _, u := range updates {
		key := deviceKey(t.ID, u.DeviceID)
		if _, ok := list.index[u.DeviceID]; !ok || devices.Get(key) == nil {
			continue
		}
		d, err := loadDevice(devices, key, t, u.DeviceID)
		if err != nil {
			return 0, err
		}
		if d.ApplyEnded(u) == task.Ignored {
			continue
		}
		if err := putDevice(devices, key, d); err != nil {
			return 0, err
		}
		applied++
	}
	return applied, nil
}

// liveList reads the record of task id, as loadLive does, with its device list.
func (s *Store) liveList(tx *bolt.Tx, id string, now time.Time) (*record, *deviceList, error) {
	rec, err := loadLive(tx, id, now)
	if err != nil {
		return nil, nil, err
	}
	list, err := s.deviceList(tx, rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, list, nil
}

// loadDevice reads a device's record, or t.Unstarted when it has none yet.
func loadDevice(devices *bolt.Bucket, key []byte, t *task.Task, deviceID string) (*task.Device, error) {
	taskID := t.ID
	raw := devices.Get(key)
	if raw == nil {
		return t.Unstarted(deviceID), nil
	}
	d, err := decodeDevice(raw)
	if err != nil {
		return nil, fmt.Errorf("localstore: decode device %s of %s: %w", deviceID, taskID, err)
	}
	return d, nil
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
			return nil, task.BadCursor()
		}
		start = int(binary.BigEndian.Uint32(b))
	}
	now := s.now()
	page := &task.DevicePage{Devices: []*task.Device{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, list, err := s.liveList(tx, taskID, now)
		if err != nil {
			return err
		}
		if start > len(list.ids) {
			return task.BadCursor()
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
		rec, list, err := s.liveList(tx, taskID, now)
		if err != nil {
			return err
		}
		if _, ok := list.index[deviceID]; !ok {
			return task.Errorf(task.CodeNotFound, "task %s has no device %s", taskID, deviceID)
		}
		d, err = loadDevice(tx.Bucket(bucketDevices), deviceKey(taskID, deviceID), rec.Task, deviceID)
		return err
	})
	return d, err
}
