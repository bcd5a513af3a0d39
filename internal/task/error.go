package task

import (
	"errors"
	"fmt"
)

// Code classifies an error for callers. The HTTP layer maps each code to a status in exactly
// one place (httpapi's problem mapping); nothing else turns codes into statuses.
type Code string

const (
	// CodeInvalid means a field of a request body breaks a rule (HTTP 422).
	CodeInvalid Code = "invalid"
	// CodeInvalidQuery means a parameter of a query breaks a rule: an unknown status filter, a
	// page size out of bounds, or a cursor that is not one a listing returned (HTTP 400).
	CodeInvalidQuery Code = "invalid_query"
	// CodeNotFound means no such task or device exists for this owner, or it has expired.
	CodeNotFound Code = "not_found"
	// CodeConflict means the current state does not allow the operation: a conditional write lost
	// a race, or the state machine refuses the event.
	CodeConflict Code = "conflict"
	// CodeIdempotencyMismatch means an Idempotency-Key was reused with a different request body.
	CodeIdempotencyMismatch Code = "idempotency_mismatch"
	// CodeInProgress means a request with the same Idempotency-Key is still being written.
	CodeInProgress Code = "in_progress"
	// CodeNotFinished means the task has no result yet because it is not in a terminal state.
	CodeNotFinished Code = "not_finished"
	// CodeUnavailable means a backend is overloaded or unreachable; the caller may retry.
	CodeUnavailable Code = "unavailable"
	// CodeInternal means something went wrong that the caller cannot fix.
	CodeInternal Code = "internal"
)

// FieldError names one bad field of a request by its JSON pointer (RFC 6901).
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Error is the domain's error: a code, a message meant for the caller, and for validation the
// fields at fault. Status, or DeviceStatus for a conflict about one device, is set on
// conflicts so the caller can be told the current state.
type Error struct {
	Code         Code
	Message      string
	Fields       []FieldError
	Status       Status
	DeviceStatus DeviceStatus
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal for any other
// error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries code c.
func IsCode(err error, c Code) bool {
	return err != nil && ErrorCode(err) == c
}
