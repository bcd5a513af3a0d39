package localstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// appendString appends s preceded by its length, so that a key made of several strings can
// never be read as another split of the same bytes.
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendTime appends t as 8 bytes that sort like the times do, before 1970 included.
func appendTime(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano())^(1<<63))
}

// readTime reads a time written by appendTime.
func readTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}

const timeLen = 8

func devicePrefix(taskID string) []byte { return appendString(nil, taskID) }

func deviceKey(taskID, deviceID string) []byte { return append(devicePrefix(taskID), deviceID...) }

func ownerPrefix(owner string) []byte { return appendString(nil, owner) }

func ownerKey(t *task.Task) []byte {
	return append(appendTime(ownerPrefix(t.Owner), t.CreatedAt), t.ID...)
}

// ownerKeyID returns the task id at the end of an owners, relaunches or active key with the
// given prefix (none for an active key): each ends with a time and the id.
func ownerKeyID(prefix, k []byte) string { return string(k[len(prefix)+timeLen:]) }

func relaunchPrefix(of string) []byte { return appendString(nil, of) }

// relaunchKey indexes task t under the task it relaunched, by creation time.
func relaunchKey(t *task.Task) []byte {
	return append(appendTime(relaunchPrefix(t.RelaunchOf), t.CreatedAt), t.ID...)
}

func activeKey(t *task.Task) []byte { return append(appendTime(nil, t.CreatedAt), t.ID...) }

func expiryKey(at time.Time, id string) []byte { return append(appendTime(nil, at), id...) }

func idemKey(owner, key string) []byte { return append(appendString(nil, owner), key...) }

func idemExpiryKey(at time.Time, owner, key string) []byte {
	return append(appendTime(nil, at), idemKey(owner, key)...)
}

// deliveryEventPrefix is the start of the keys of one event's attempts in the deliveries
// bucket: the task, the event's time, the event's id.
func deliveryEventPrefix(taskID string, eventAt time.Time, eventID string) []byte {
	return appendString(appendTime(appendString(nil, taskID), eventAt), eventID)
}

// deliveryKey is the key of one attempt: the attempts of a task sort by event time, event id and
// attempt.
func deliveryKey(d *task.Delivery) []byte {
	return binary.BigEndian.AppendUint32(deliveryEventPrefix(d.TaskID, d.EventAt, d.EventID), uint32(d.Attempt))
}

// hookDueKey indexes an outbox job by when it is due.
func hookDueKey(at time.Time, id string) []byte { return append(appendTime(nil, at), id...) }

// prefixEnd returns the smallest key greater than every key that starts with p, or nil when
// there is none.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// Cursors are opaque to callers but carry a kind byte, so that a task cursor given to a device
// listing (or a cursor of another owner) is refused instead of misread.
const (
	cursorTasks      = 't'
	cursorDevices    = 'd'
	cursorRelaunches = 'r'
	cursorActive     = 'a'
	cursorDeliveries = 'w'
)

var cursorEncoding = base64.RawURLEncoding

func encodeCursor(kind byte, body []byte) string {
	return cursorEncoding.EncodeToString(append([]byte{kind}, body...))
}

func decodeCursor(kind byte, s string) ([]byte, error) {
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != kind {
		return nil, task.BadCursor()
	}
	return b[1:], nil
}
