package sqsqueue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fleetrun/fleetrun/internal/engine"
)

// Decode parses a queue message body strictly. Anything this code cannot act on — not JSON, a
// field it does not know, trailing data, another version, an unknown action, no task id or a
// negative attempt — is an error wrapping engine.ErrMalformed, because delivering it again would
// never help. Any change to the message shape therefore needs a new engine.MessageVersion.
// Version 1 messages (without a lease) are still read, so that messages in flight during an
// upgrade are handled.
func Decode(body string) (engine.Message, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	var m engine.Message
	if err := dec.Decode(&m); err != nil {
		return engine.Message{}, fmt.Errorf("sqsqueue: decode message: %w: %v", engine.ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return engine.Message{}, fmt.Errorf("sqsqueue: decode message: %w: data after the JSON object", engine.ErrMalformed)
	}
	switch {
	case m.Version == 1 && m.Lease != 0:
		return engine.Message{}, fmt.Errorf("sqsqueue: a version 1 message with a lease: %w", engine.ErrMalformed)
	case m.Version < engine.MinMessageVersion || m.Version > engine.MessageVersion:
		return engine.Message{}, fmt.Errorf("sqsqueue: message version %d, want %d to %d: %w", m.Version,
			engine.MinMessageVersion, engine.MessageVersion, engine.ErrMalformed)
	}
	switch m.Action {
	case engine.ActionDispatch, engine.ActionPoll, engine.ActionCancel:
		if len(m.DeviceIDs) > 0 {
			return engine.Message{}, fmt.Errorf("sqsqueue: %s message with device ids: %w", m.Action, engine.ErrMalformed)
		}
	case engine.ActionStopDevices:
		if m.Version < 2 || len(m.DeviceIDs) == 0 {
			return engine.Message{}, fmt.Errorf("sqsqueue: version %d %s message with %d device ids: %w", m.Version, m.Action,
				len(m.DeviceIDs), engine.ErrMalformed)
		}
	default:
		return engine.Message{}, fmt.Errorf("sqsqueue: unknown action %q: %w", m.Action, engine.ErrMalformed)
	}
	if m.TaskID == "" {
		return engine.Message{}, fmt.Errorf("sqsqueue: %s message without a task id: %w", m.Action, engine.ErrMalformed)
	}
	if m.Attempt < 0 {
		return engine.Message{}, fmt.Errorf("sqsqueue: %s message for %s with attempt %d: %w", m.Action, m.TaskID, m.Attempt, engine.ErrMalformed)
	}
	return m, nil
}
