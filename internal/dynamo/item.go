package dynamo

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// taskItem is the task as stored. The request (without its device ids) and the result are
// gzip'd JSON, the device ids too, so that a 10,000-device task fits one item.
type taskItem struct {
	PK     string `dynamodbav:"pk"`
	SK     string `dynamodbav:"sk"`
	Type   string `dynamodbav:"type"`
	GSI1PK string `dynamodbav:"gsi1pk"`
	GSI1SK string `dynamodbav:"gsi1sk"`
	// GSI2PK and GSI2SK put an unfinished task with a lease in IndexOpen; Lease is the lease in
	// Unix nanoseconds, for exact comparisons.
	GSI2PK      string `dynamodbav:"gsi2pk,omitempty"`
	GSI2SK      string `dynamodbav:"gsi2sk,omitempty"`
	Lease       int64  `dynamodbav:"lease,omitempty"`
	ID          string `dynamodbav:"id"`
	Owner       string `dynamodbav:"owner"`
	Status      string `dynamodbav:"status"`
	Version     int64  `dynamodbav:"version"`
	CreatedAt   string `dynamodbav:"createdAt"`
	UpdatedAt   string `dynamodbav:"updatedAt"`
	StartedAt   string `dynamodbav:"startedAt,omitempty"`
	CompletedAt string `dynamodbav:"completedAt,omitempty"`
	Exp         int64  `dynamodbav:"exp,omitempty"`
	TTL         int64  `dynamodbav:"ttl,omitempty"`
	Request     []byte `dynamodbav:"request"`
	DeviceIDs   []byte `dynamodbav:"deviceIds,omitempty"`
	// IDParts is how many "ids" items hold the device list when it was too large to inline.
	IDParts    int    `dynamodbav:"idParts,omitempty"`
	Step       string `dynamodbav:"step,omitempty"`
	Result     []byte `dynamodbav:"result,omitempty"`
	Published  bool   `dynamodbav:"published,omitempty"`
	RelaunchOf string `dynamodbav:"relaunchOf,omitempty"`

	Total         int `dynamodbav:"c_total"`
	Pending       int `dynamodbav:"c_pending"`
	Running       int `dynamodbav:"c_running"`
	Succeeded     int `dynamodbav:"c_succeeded"`
	Failed        int `dynamodbav:"c_failed"`
	TimedOut      int `dynamodbav:"c_timed_out"`
	Cancelled     int `dynamodbav:"c_cancelled"`
	Undeliverable int `dynamodbav:"c_undeliverable"`
}

// counterAttr names the task attribute that counts devices in status d.
func counterAttr(d task.DeviceStatus) string { return "c_" + string(d) }

// deviceItem is one device as stored, written on its first update.
type deviceItem struct {
	PK              string `dynamodbav:"pk"`
	SK              string `dynamodbav:"sk"`
	Type            string `dynamodbav:"type"`
	TaskID          string `dynamodbav:"taskId"`
	DeviceID        string `dynamodbav:"deviceId"`
	Status          string `dynamodbav:"status"`
	ExitCode        *int   `dynamodbav:"exitCode,omitempty"`
	Stdout          string `dynamodbav:"stdout,omitempty"`
	Stderr          string `dynamodbav:"stderr,omitempty"`
	StdoutTruncated bool   `dynamodbav:"stdoutTruncated,omitempty"`
	StderrTruncated bool   `dynamodbav:"stderrTruncated,omitempty"`
	StartedAt       string `dynamodbav:"startedAt,omitempty"`
	CompletedAt     string `dynamodbav:"completedAt,omitempty"`
	Reason          string `dynamodbav:"reason,omitempty"`
	Ref             string `dynamodbav:"ref,omitempty"`
	CancelRequested string `dynamodbav:"cancelRequestedAt,omitempty"`
	UpdatedAt       string `dynamodbav:"updatedAt"`
	Exp             int64  `dynamodbav:"exp,omitempty"`
	TTL             int64  `dynamodbav:"ttl,omitempty"`
}

// idempotencyItem is an owner's Idempotency-Key and the task it created.
type idempotencyItem struct {
	PK          string `dynamodbav:"pk"`
	SK          string `dynamodbav:"sk"`
	Type        string `dynamodbav:"type"`
	Owner       string `dynamodbav:"owner"`
	Key         string `dynamodbav:"key"`
	TaskID      string `dynamodbav:"taskId"`
	RequestHash string `dynamodbav:"requestHash"`
	Exp         int64  `dynamodbav:"exp"`
	TTL         int64  `dynamodbav:"ttl"`
}

// Item size budgets. DynamoDB items are at most 400 KB; the task item keeps room for its result.
const (
	inlineIDsLimit = 200 << 10
	idPartSize     = 300 << 10
	resultLimit    = 120 << 10
	requestLimit   = 60 << 10
)

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return formatTime(*t)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func parseTimePtr(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return &t, err
}

// expiry returns the exp (Unix nanoseconds) and ttl (Unix seconds, rounded up so DynamoDB
// never deletes an item before it has expired) attributes for t; zero for the zero time.
func expiry(t time.Time) (exp, ttl int64) {
	if t.IsZero() {
		return 0, 0
	}
	ttl = t.Unix()
	if t.Nanosecond() > 0 {
		ttl++
	}
	return t.UnixNano(), ttl
}

// expired reports whether an item with exp (0 for never) has expired at now, the same rule as
// task.Task.Expired.
func expired(exp int64, now time.Time) bool {
	return exp != 0 && now.UnixNano() >= exp
}

func gzipJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gunzipJSON(b []byte, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// encodeTask builds the task item. The device ids are returned apart (parts) when they do not
// fit inline; the caller writes them as "ids" items in the same transaction.
func encodeTask(t *task.Task) (item map[string]types.AttributeValue, parts [][]byte, err error) {
	req := t.Request
	req.DeviceIDs = nil
	reqBlob, err := gzipJSON(req)
	if err != nil {
		return nil, nil, err
	}
	if len(reqBlob) > requestLimit {
		return nil, nil, task.Errorf(task.CodeInvalid, "the request is too large to store (%d bytes compressed)", len(reqBlob))
	}
	ids, err := gzipJSON(t.Request.DeviceIDs)
	if err != nil {
		return nil, nil, err
	}
	exp, ttl := expiry(t.ExpiresAt)
	ti := taskItem{
		PK: taskPK(t.ID), SK: skTask, Type: kindTask,
		GSI1PK: ownerPK(t.Owner), GSI1SK: ownerSK(t.CreatedAt, t.ID),
		ID: t.ID, Owner: t.Owner, Status: string(t.Status), Version: t.Version,
		CreatedAt: formatTime(t.CreatedAt), UpdatedAt: formatTime(t.UpdatedAt),
		StartedAt: formatTimePtr(t.StartedAt), CompletedAt: formatTimePtr(t.CompletedAt),
		Exp: exp, TTL: ttl, Request: reqBlob, Step: t.CurrentStep, RelaunchOf: t.RelaunchOf,
		Total: t.Counts.Total, Pending: t.Counts.Pending, Running: t.Counts.Running,
		Succeeded: t.Counts.Succeeded, Failed: t.Counts.Failed, TimedOut: t.Counts.TimedOut,
		Cancelled: t.Counts.Cancelled, Undeliverable: t.Counts.Undeliverable,
	}
	if !t.Lease.IsZero() && !t.Status.Terminal() {
		ti.GSI2PK, ti.GSI2SK, ti.Lease = openPK, leaseSK(t.Lease, t.ID), t.Lease.UnixNano()
	}
	if len(ids) <= inlineIDsLimit {
		ti.DeviceIDs = ids
	} else {
		for len(ids) > 0 {
			n := min(len(ids), idPartSize)
			parts = append(parts, ids[:n])
			ids = ids[n:]
		}
		ti.IDParts = len(parts)
	}
	if t.Result != nil {
		if ti.Result, err = encodeResult(t.Result); err != nil {
			return nil, nil, err
		}
	}
	item, err = attributevalue.MarshalMap(ti)
	return item, parts, err
}

// encodeResult compresses a result, shortening its device lists (and marking it truncated)
// in the rare case that they would not fit the task item; the devices listing has them all.
func encodeResult(r *task.Result) ([]byte, error) {
	c := *r
	for {
		b, err := gzipJSON(c)
		if err != nil || len(b) <= resultLimit {
			return b, err
		}
		c.SucceededDevices = c.SucceededDevices[:len(c.SucceededDevices)/2]
		c.FailedDevices = c.FailedDevices[:len(c.FailedDevices)/2]
		c.CancelledDevices = c.CancelledDevices[:len(c.CancelledDevices)/2]
		c.Truncated = true
	}
}

// decodeTask turns a task item back into a task. The device ids come from the item or, for an
// oversized list, from parts (in order), which the caller has read.
func decodeTask(item map[string]types.AttributeValue, parts [][]byte) (*task.Task, error) {
	var ti taskItem
	if err := attributevalue.UnmarshalMap(item, &ti); err != nil {
		return nil, fmt.Errorf("decode task item: %w", err)
	}
	t := &task.Task{
		ID: ti.ID, Owner: ti.Owner, Status: task.Status(ti.Status), Version: ti.Version,
		CurrentStep: ti.Step, Published: ti.Published, RelaunchOf: ti.RelaunchOf,
		Counts: task.Counts{Total: ti.Total, Pending: ti.Pending, Running: ti.Running,
			Succeeded: ti.Succeeded, Failed: ti.Failed, TimedOut: ti.TimedOut,
			Cancelled: ti.Cancelled, Undeliverable: ti.Undeliverable},
	}
	var err error
	if t.CreatedAt, err = parseTime(ti.CreatedAt); err != nil {
		return nil, fmt.Errorf("decode task %s createdAt: %w", ti.ID, err)
	}
	if t.UpdatedAt, err = parseTime(ti.UpdatedAt); err != nil {
		return nil, fmt.Errorf("decode task %s updatedAt: %w", ti.ID, err)
	}
	if t.StartedAt, err = parseTimePtr(ti.StartedAt); err != nil {
		return nil, fmt.Errorf("decode task %s startedAt: %w", ti.ID, err)
	}
	if t.CompletedAt, err = parseTimePtr(ti.CompletedAt); err != nil {
		return nil, fmt.Errorf("decode task %s completedAt: %w", ti.ID, err)
	}
	if ti.Exp != 0 {
		t.ExpiresAt = time.Unix(0, ti.Exp).UTC()
	}
	if ti.Lease != 0 {
		t.Lease = time.Unix(0, ti.Lease).UTC()
	}
	if err := gunzipJSON(ti.Request, &t.Request); err != nil {
		return nil, fmt.Errorf("decode task %s request: %w", ti.ID, err)
	}
	ids := ti.DeviceIDs
	if ti.IDParts > 0 {
		if len(parts) != ti.IDParts {
			return nil, fmt.Errorf("decode task %s: %d of %d device id parts", ti.ID, len(parts), ti.IDParts)
		}
		ids = bytes.Join(parts, nil)
	}
	if err := gunzipJSON(ids, &t.Request.DeviceIDs); err != nil {
		return nil, fmt.Errorf("decode task %s device ids: %w", ti.ID, err)
	}
	if len(ti.Result) > 0 {
		t.Result = new(task.Result)
		if err := gunzipJSON(ti.Result, t.Result); err != nil {
			return nil, fmt.Errorf("decode task %s result: %w", ti.ID, err)
		}
	}
	return t, nil
}

// idParts reports how many "ids" items a task item's device list is split over.
func idParts(item map[string]types.AttributeValue) int {
	n, ok := item["idParts"].(*types.AttributeValueMemberN)
	if !ok {
		return 0
	}
	var v int
	fmt.Sscan(n.Value, &v)
	return v
}

func itemExp(item map[string]types.AttributeValue) int64 {
	n, ok := item[attrExp].(*types.AttributeValueMemberN)
	if !ok {
		return 0
	}
	var v int64
	fmt.Sscan(n.Value, &v)
	return v
}

func itemString(item map[string]types.AttributeValue, name string) string {
	if s, ok := item[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func encodeDevice(taskID string, d *task.Device, now, expires time.Time) (map[string]types.AttributeValue, error) {
	exp, ttl := expiry(expires)
	di := deviceItem{Exp: exp, TTL: ttl,
		PK: taskPK(taskID), SK: deviceSK(d.ID), Type: kindDevice, TaskID: taskID, DeviceID: d.ID,
		Status: string(d.Status), ExitCode: d.ExitCode, Stdout: d.Stdout, Stderr: d.Stderr,
		StdoutTruncated: d.StdoutTruncated, StderrTruncated: d.StderrTruncated,
		StartedAt: formatTimePtr(d.StartedAt), CompletedAt: formatTimePtr(d.CompletedAt),
		Reason: d.Reason, Ref: d.Ref, CancelRequested: formatTimePtr(d.CancelRequestedAt), UpdatedAt: formatTime(now),
	}
	return attributevalue.MarshalMap(di)
}

func decodeDevice(item map[string]types.AttributeValue) (*task.Device, error) {
	var di deviceItem
	if err := attributevalue.UnmarshalMap(item, &di); err != nil {
		return nil, fmt.Errorf("decode device item: %w", err)
	}
	d := &task.Device{TaskID: di.TaskID, ID: di.DeviceID, Status: task.DeviceStatus(di.Status),
		ExitCode: di.ExitCode, Stdout: di.Stdout, Stderr: di.Stderr,
		StdoutTruncated: di.StdoutTruncated, StderrTruncated: di.StderrTruncated,
		Reason: di.Reason, Ref: di.Ref}
	var err error
	if d.StartedAt, err = parseTimePtr(di.StartedAt); err != nil {
		return nil, fmt.Errorf("decode device %s startedAt: %w", di.DeviceID, err)
	}
	if d.CompletedAt, err = parseTimePtr(di.CompletedAt); err != nil {
		return nil, fmt.Errorf("decode device %s completedAt: %w", di.DeviceID, err)
	}
	if d.CancelRequestedAt, err = parseTimePtr(di.CancelRequested); err != nil {
		return nil, fmt.Errorf("decode device %s cancelRequestedAt: %w", di.DeviceID, err)
	}
	return d, nil
}
