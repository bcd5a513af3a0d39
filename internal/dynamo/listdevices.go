package dynamo

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/fleetrun/fleetrun/internal/task"
)

// ListDevices pages through a task's devices in request order. The order and the set come
// from the task item; the state of each device from its item, or pending when it has none.
// The cursor is the position in the request's device list.
//
// Without a status filter a page is one BatchGetItem per 100 devices of the page. With one, the
// store walks the list from the cursor in blocks of 100 (one BatchGetItem each) until the page
// is full, so that paging through a whole task reads each device once, however large its
// output; a Query of the task's partition would read every device item for every page.
func (s *Store) ListDevices(ctx context.Context, taskID string, q task.DeviceQuery) (*task.DevicePage, error) {
	t, err := s.readTask(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("dynamo: list devices of %s: %w", taskID, err)
	}
	ids := t.Request.DeviceIDs
	limit := task.PageSize(q.Limit)
	offset := 0
	if q.Cursor != "" {
		pos, err := decodeCursor("d1", q.Cursor)
		if err != nil {
			return nil, task.BadCursor()
		}
		if offset, err = strconv.Atoi(pos); err != nil || offset < 0 || offset > len(ids) {
			return nil, task.BadCursor()
		}
	}
	page := &task.DevicePage{Devices: []*task.Device{}}
	for i := offset; i < len(ids) && page.Next == ""; {
		n := batchGetMax
		if len(q.Statuses) == 0 {
			n = limit - len(page.Devices) // exactly the page, and no read past it
		}
		block := ids[i:min(i+n, len(ids))]
		stored, err := s.readDevices(ctx, taskID, block)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list devices of %s: %w", taskID, err)
		}
		for j, id := range block {
			d := stored[id]
			if d == nil {
				d = t.Unstarted(id)
			}
			if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, d.Status) {
				continue
			}
			if len(page.Devices) == limit {
				page.Next = encodeCursor("d1", strconv.Itoa(i+j))
				break
			}
			page.Devices = append(page.Devices, d)
		}
		i += len(block)
		if len(q.Statuses) == 0 && len(page.Devices) == limit && i < len(ids) {
			page.Next = encodeCursor("d1", strconv.Itoa(i))
		}
	}
	return page, nil
}

// GetDevice reads the task and the device in one BatchGetItem: the task says whether the
// device belongs to it (and whether it has expired), the device item its state, pending when
// it has none.
func (s *Store) GetDevice(ctx context.Context, taskID, deviceID string) (*task.Device, error) {
	taskKey, devKey := itemKey{taskPK(taskID), skTask}, itemKey{taskPK(taskID), deviceSK(deviceID)}
	items, err := s.batchGet(ctx, []itemKey{taskKey, devKey})
	if err != nil {
		return nil, fmt.Errorf("dynamo: get device %s of %s: %w", deviceID, taskID, err)
	}
	ti := items[taskKey]
	if ti == nil || expired(itemExp(ti), s.clock()) {
		return nil, fmt.Errorf("dynamo: get device %s of %s: %w", deviceID, taskID, notFound("no task %s", taskID))
	}
	t, err := s.decodeTaskItem(ctx, ti)
	if err != nil {
		return nil, fmt.Errorf("dynamo: get device %s of %s: %w", deviceID, taskID, err)
	}
	if !slices.Contains(t.Request.DeviceIDs, deviceID) {
		return nil, fmt.Errorf("dynamo: get device %s of %s: %w", deviceID, taskID,
			notFound("task %s has no device %s", taskID, deviceID))
	}
	if di := items[devKey]; di != nil {
		d, err := decodeDevice(di)
		if err != nil {
			return nil, fmt.Errorf("dynamo: get device %s of %s: %w", deviceID, taskID, err)
		}
		return d, nil
	}
	return t.Unstarted(deviceID), nil
}
