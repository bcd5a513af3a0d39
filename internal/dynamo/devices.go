package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// devicePlan is the write that brings one device from the status the store read to the status
// its updates lead to.
type devicePlan struct {
	id      string
	from    task.DeviceStatus
	to      task.DeviceStatus
	item    map[string]types.AttributeValue
	applied int
	size    int
}

// chunkOutcome is what became of one transaction of device writes.
type chunkOutcome int

const (
	chunkWritten chunkOutcome = iota
	// chunkStale means another writer moved one of the devices since the store read it.
	chunkStale
	// chunkContended means DynamoDB refused the transaction for contention or load; the same
	// plan may succeed after a backoff.
	chunkContended
	// chunkFinal means the task reached a terminal state (or vanished): nothing more applies.
	chunkFinal
)

// ApplyDeviceUpdates reads the task (for its device list and status) with the current device
// items (one BatchGetItem, strongly consistent; a device without an item is pending), folds each
// device's updates in order with task.Device.Apply, which keeps only forward moves (and a longer
// output for a device that has ended), and writes
// the result in TransactWriteItems of at most 100 actions: one Put per moved device,
// conditioned on the status that was read, and one UpdateItem of the task that adds the
// counter deltas and one to the version, conditioned on the task not being terminal.
//
// A transaction cancelled because a device moved under it is re-planned from a fresh read of
// its devices; one cancelled for contention or throttling is retried after a backoff. Both are
// bounded; when the bound is hit the updates not yet written are reported as CodeUnavailable
// (the ones written stay written, and a retry applies the rest exactly once). When the task
// turns terminal part-way, the remaining updates are ignored, as for a terminal task.
func (s *Store) ApplyDeviceUpdates(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, int, error) {
	byDevice := make(map[string][]task.DeviceUpdate)
	var todo []string
	for _, u := range updates {
		if !u.Status.Valid() || u.DeviceID == "" || len(u.DeviceID) > maxDeviceIDLen {
			continue // not a move any device can make, or an id no device can have
		}
		if _, seen := byDevice[u.DeviceID]; !seen {
			todo = append(todo, u.DeviceID)
		}
		byDevice[u.DeviceID] = append(byDevice[u.DeviceID], u)
	}
	// The first read fetches the task with the devices, in the same BatchGetItem.
	t, current, err := s.readTaskAndDevices(ctx, taskID, todo)
	if err != nil {
		return nil, 0, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, err)
	}
	if t.Status.Terminal() {
		n, err := s.refreshEnded(ctx, t, todo, current, byDevice)
		if err != nil {
			return nil, n, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, err)
		}
		return t, n, nil
	}
	member := make(map[string]bool, len(t.Request.DeviceIDs))
	for _, id := range t.Request.DeviceIDs {
		member[id] = true
	}
	todo = slices.DeleteFunc(todo, func(id string) bool { return !member[id] })
	applied, raced := 0, false
	for round := 0; len(todo) > 0; round++ {
		if round >= 4*s.maxAttempts {
			return nil, applied, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID,
				task.Errorf(task.CodeUnavailable, "%d device updates lost too many races; try again", len(todo)))
		}
		now := s.clock()
		if round > 0 {
			if current, err = s.readDevices(ctx, taskID, todo); err != nil {
				return nil, applied, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, err)
			}
		}
		plans, err := planDevices(taskID, todo, current, byDevice, now, s.deviceExpiry(t))
		if err != nil {
			return nil, applied, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, err)
		}
		var retry []string
		contended := false
		for _, chunk := range chunkPlans(plans) {
			outcome, final, err := s.writeChunk(ctx, taskID, chunk, now)
			if err != nil {
				return nil, applied, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, err)
			}
			switch outcome {
			case chunkWritten:
				for _, p := range chunk {
					applied += p.applied
				}
			case chunkFinal:
				if final == nil {
					return nil, applied, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, notFound("no task %s", taskID))
				}
				return final, applied, nil
			default:
				contended = contended || outcome == chunkContended
				for _, p := range chunk {
					retry = append(retry, p.id)
				}
			}
		}
		if len(retry) > 0 {
			raced = true
			s.log.DebugContext(ctx, "device updates raced; re-planning", "task_id", taskID, "devices", len(retry), "round", round+1)
			if contended {
				if err := s.backoff(ctx, round); err != nil {
					return nil, applied, err
				}
			}
		}
		todo = retry
	}
	if applied == 0 && !raced {
		return t, 0, nil
	}
	if t, err = s.readTask(ctx, taskID); err != nil {
		return nil, applied, fmt.Errorf("dynamo: apply device updates to %s: %w", taskID, err)
	}
	return t, applied, nil
}

// refreshEnded writes the longer copies of output that updates bring for the devices of ended
// task t (task.Device.ApplyEnded), without touching the task. Each device item is Put on the
// condition that its status is unchanged and neither stored stream is longer than the one
// written, so that two refreshes racing cannot leave the shorter copy; a refresh that loses
// is planned again from a fresh read. Devices without an item never started and stay so.
func (s *Store) refreshEnded(ctx context.Context, t *task.Task, ids []string, current map[string]*task.Device, updates map[string][]task.DeviceUpdate) (int, error) {
	expires := s.deviceExpiry(t)
	if expires.Before(t.ExpiresAt) {
		expires = t.ExpiresAt
	}
	applied := 0
	for round := 0; len(ids) > 0; round++ {
		if round > 0 {
			var err error
			if current, err = s.readDevices(ctx, t.ID, ids); err != nil {
				return applied, err
			}
		}
		var retry []string
		for _, id := range ids {
			cur := current[id]
			if cur == nil {
				continue
			}
			d, n := *cur, 0
			for _, u := range updates[id] {
				if d.ApplyEnded(u) != task.Ignored {
					n++
				}
			}
			if n == 0 {
				continue
			}
			item, err := encodeDevice(t.ID, &d, s.clock(), expires)
			if err != nil {
				return applied, fmt.Errorf("encode device %s: %w", id, err)
			}
			err = s.call(ctx, "TransactWriteItems", func(ctx context.Context) error {
				_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{{Put: &types.Put{
					TableName: aws.String(s.table), Item: item,
					ConditionExpression: aws.String("#status = :status AND (attribute_not_exists(#out) OR size(#out) <= :out) " +
						"AND (attribute_not_exists(#err) OR size(#err) <= :err)"),
					ExpressionAttributeNames: map[string]string{"#status": attrStatus, "#out": "stdout", "#err": "stderr"},
					ExpressionAttributeValues: map[string]types.AttributeValue{":status": str(string(d.Status)),
						":out": num(int64(len(d.Stdout))), ":err": num(int64(len(d.Stderr)))},
				}}}})
				return err
			})
			var cancelled *types.TransactionCanceledException
			switch {
			case errors.As(err, &cancelled) && round < s.maxAttempts:
				retry = append(retry, id)
			case err != nil:
				return applied, err
			default:
				applied += n
			}
		}
		ids = retry
	}
	return applied, nil
}

// maxDeviceIDLen bounds the device ids the store looks up: longer ones cannot be part of a
// sort key (1,024 bytes), so no device has them.
const maxDeviceIDLen = 1000

// readDevices reads the stored devices among ids; a device missing from the map has no item
// and is pending.
func (s *Store) readDevices(ctx context.Context, taskID string, ids []string) (map[string]*task.Device, error) {
	_, devices, err := s.readItems(ctx, taskID, false, ids)
	return devices, err
}

// readTaskAndDevices reads a live task and the stored devices among ids in one BatchGetItem
// (one per 100 keys).
func (s *Store) readTaskAndDevices(ctx context.Context, taskID string, ids []string) (*task.Task, map[string]*task.Device, error) {
	item, devices, err := s.readItems(ctx, taskID, true, ids)
	if err != nil {
		return nil, nil, err
	}
	if item == nil || expired(itemExp(item), s.clock()) {
		return nil, nil, notFound("no task %s", taskID)
	}
	t, err := s.decodeTaskItem(ctx, item)
	return t, devices, err
}

func (s *Store) readItems(ctx context.Context, taskID string, withTask bool, ids []string) (map[string]types.AttributeValue, map[string]*task.Device, error) {
	keys := make([]itemKey, 0, len(ids)+1)
	taskKey := itemKey{taskPK(taskID), skTask}
	if withTask {
		keys = append(keys, taskKey)
	}
	for _, id := range ids {
		keys = append(keys, itemKey{taskPK(taskID), deviceSK(id)})
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, nil, fmt.Errorf("read devices: %w", err)
	}
	devices := make(map[string]*task.Device, len(items))
	for k, item := range items {
		if k == taskKey {
			continue
		}
		d, err := decodeDevice(item)
		if err != nil {
			return nil, nil, err
		}
		devices[d.ID] = d
	}
	return items[taskKey], devices, nil
}

// planDevices folds each device's updates onto its current state and returns the writes for
// the devices that move.
func planDevices(taskID string, ids []string, current map[string]*task.Device, updates map[string][]task.DeviceUpdate, now, expires time.Time) ([]devicePlan, error) {
	var plans []devicePlan
	for _, id := range ids {
		d := task.Device{TaskID: taskID, ID: id, Status: task.DevicePending}
		if cur := current[id]; cur != nil {
			d = *cur
		}
		from, n := d.Status, 0
		for _, u := range updates[id] {
			if d.Apply(u, now) != task.Ignored {
				n++
			}
		}
		if n == 0 {
			continue
		}
		item, err := encodeDevice(taskID, &d, now, expires)
		if err != nil {
			return nil, fmt.Errorf("encode device %s: %w", id, err)
		}
		size := 512 + 2*len(id) + len(d.Stdout) + len(d.Stderr) + len(d.Reason) + len(d.Ref)
		plans = append(plans, devicePlan{id: id, from: from, to: d.Status, item: item, applied: n, size: size})
	}
	return plans, nil
}

// chunkPlans splits plans into transactions: the task update plus at most 99 devices, within
// DynamoDB's 4 MB transaction size.
func chunkPlans(plans []devicePlan) [][]devicePlan {
	var chunks [][]devicePlan
	start, size := 0, 0
	for i, p := range plans {
		if i > start && (i-start == transactMax-1 || size+p.size > transactBudget) {
			chunks = append(chunks, plans[start:i])
			start, size = i, 0
		}
		size += p.size
	}
	if start < len(plans) {
		chunks = append(chunks, plans[start:])
	}
	return chunks
}

// terminalValues are the task statuses that stop device writes, for the task's condition.
var terminalValues = map[string]types.AttributeValue{
	":completed": str(string(task.StatusCompleted)), ":failed": str(string(task.StatusFailed)),
	":timedOut": str(string(task.StatusTimedOut)), ":cancelled": str(string(task.StatusCancelled)),
}

// writeChunk writes one transaction of device moves with the task's counters and version.
// For chunkFinal it returns the task as it was when the write was refused (nil if it is gone).
func (s *Store) writeChunk(ctx context.Context, taskID string, chunk []devicePlan, now time.Time) (chunkOutcome, *task.Task, error) {
	deltas := map[task.DeviceStatus]int{}
	for _, p := range chunk {
		deltas[p.from]--
		deltas[p.to]++
	}
	names := map[string]string{"#pk": attrPK, "#status": attrStatus, "#version": attrVersion, "#updatedAt": "updatedAt"}
	values := map[string]types.AttributeValue{":one": num(1), ":now": str(formatTime(now))}
	for k, v := range terminalValues {
		values[k] = v
	}
	adds := []string{"#version :one"}
	for _, d := range task.DeviceStatuses() {
		if n := deltas[d]; n != 0 {
			names["#c_"+string(d)] = counterAttr(d)
			values[":d_"+string(d)] = num(int64(n))
			adds = append(adds, fmt.Sprintf("#c_%s :d_%s", d, d))
		}
	}
	actions := make([]types.TransactWriteItem, 0, len(chunk)+1)
	actions = append(actions, types.TransactWriteItem{Update: &types.Update{
		TableName:                           aws.String(s.table),
		Key:                                 key(taskPK(taskID), skTask),
		UpdateExpression:                    aws.String("SET #updatedAt = :now ADD " + strings.Join(adds, ", ")),
		ConditionExpression:                 aws.String("attribute_exists(#pk) AND NOT (#status IN (:completed, :failed, :timedOut, :cancelled))"),
		ExpressionAttributeNames:            names,
		ExpressionAttributeValues:           values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}})
	for _, p := range chunk {
		put := &types.Put{TableName: aws.String(s.table), Item: p.item,
			ConditionExpression: aws.String("attribute_not_exists(#pk)"), ExpressionAttributeNames: map[string]string{"#pk": attrPK}}
		if p.from != task.DevicePending {
			put.ConditionExpression = aws.String("#status = :from")
			put.ExpressionAttributeNames = map[string]string{"#status": attrStatus}
			put.ExpressionAttributeValues = map[string]types.AttributeValue{":from": str(string(p.from))}
		}
		actions = append(actions, types.TransactWriteItem{Put: put})
	}
	in := &dynamodb.TransactWriteItemsInput{TransactItems: actions}
	err := s.call(ctx, "TransactWriteItems", func(ctx context.Context) error {
		_, err := s.db.TransactWriteItems(ctx, in)
		return err
	})
	if err == nil {
		return chunkWritten, nil, nil
	}
	var cancelled *types.TransactionCanceledException
	if !errors.As(err, &cancelled) {
		return 0, nil, err
	}
	reasons := cancelled.CancellationReasons
	switch {
	case reasonCode(reasons, 0) == reasonConditionFailed:
		old := reasons[0].Item
		if old == nil {
			return chunkFinal, nil, nil
		}
		t, err := s.decodeTaskItem(ctx, old)
		return chunkFinal, t, err
	case anyReason(reasons, reasonConditionFailed):
		return chunkStale, nil, nil
	case anyReason(reasons, reasonConflict, reasonThrottled, reasonThroughput):
		return chunkContended, nil, nil
	}
	return 0, nil, err
}

// deviceExpiry bounds how long the device items of running task t are kept: past the task's
// deadline by the retention and a day, so they outlast the task itself, which ends by its
// deadline and is kept for the retention. Zero when the store has no retention or the task
// has not started; those devices get the task's expiry when it ends (stampExpiry), as do any
// whose bound falls short because the task ended late.
func (s *Store) deviceExpiry(t *task.Task) time.Time {
	deadline := t.Deadline()
	if s.retention <= 0 || deadline.IsZero() {
		return time.Time{}
	}
	return deadline.Add(s.retention + 24*time.Hour)
}
