package dynamo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fleetrun/fleetrun/internal/task"
)

// ListDevices pages through a task's devices in request order. The order and the set come
// from the task item; the state of each device from its item, or pending when it has none.
//
// Without a status filter a page is one BatchGetItem per 100 devices of the page. With one,
// the store first learns every stored device's status from a Query of the task's device items
// that projects only the status (paged, strongly consistent), picks the page from that, and
// then reads the full items of the page; a device that moved in between and no longer matches
// is left out. The cursor is the position in the request's device list.
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
			return nil, invalidCursor()
		}
		if offset, err = strconv.Atoi(pos); err != nil || offset < 0 || offset > len(ids) {
			return nil, invalidCursor()
		}
	}
	page := &task.DevicePage{Devices: []*task.Device{}}
	var selected []string
	if len(q.Statuses) == 0 {
		end := min(offset+limit, len(ids))
		selected = ids[offset:end]
		if end < len(ids) {
			page.Next = encodeCursor("d1", strconv.Itoa(end))
		}
	} else {
		statuses, err := s.deviceStatuses(ctx, taskID)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list devices of %s: %w", taskID, err)
		}
		for i := offset; i < len(ids); i++ {
			st, ok := statuses[ids[i]]
			if !ok {
				st = task.DevicePending
			}
			if !slices.Contains(q.Statuses, st) {
				continue
			}
			if len(selected) == limit {
				page.Next = encodeCursor("d1", strconv.Itoa(i))
				break
			}
			selected = append(selected, ids[i])
		}
	}
	stored, err := s.readDevices(ctx, taskID, selected)
	if err != nil {
		return nil, fmt.Errorf("dynamo: list devices of %s: %w", taskID, err)
	}
	for _, id := range selected {
		d := stored[id]
		if d == nil {
			d = &task.Device{TaskID: taskID, ID: id, Status: task.DevicePending}
		}
		if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, d.Status) {
			continue
		}
		page.Devices = append(page.Devices, d)
	}
	return page, nil
}

// deviceStatuses returns the status of every device of a task that has an item.
func (s *Store) deviceStatuses(ctx context.Context, taskID string) (map[string]task.DeviceStatus, error) {
	in := s.partitionQuery(taskID, prefixDevice)
	in.ProjectionExpression = aws.String("#sk, #status")
	in.ExpressionAttributeNames["#status"] = attrStatus
	items, err := s.queryAll(ctx, in)
	if err != nil {
		return nil, err
	}
	statuses := make(map[string]task.DeviceStatus, len(items))
	for _, item := range items {
		statuses[strings.TrimPrefix(itemString(item, attrSK), prefixDevice)] = task.DeviceStatus(itemString(item, attrStatus))
	}
	return statuses, nil
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
	return &task.Device{TaskID: taskID, ID: deviceID, Status: task.DevicePending}, nil
}
