package engine

import (
	"crypto/rand"
	"time"

	"github.com/oklog/ulid/v2"
)

// NewIDAt returns a new task id for a task created at t: a ULID, so ids sort by creation time
// and carry no guessable sequence.
func NewIDAt(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String()
}
