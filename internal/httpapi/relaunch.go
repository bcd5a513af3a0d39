package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// relaunch is POST /tasks/{id}/relaunch; engine.Relaunch documents the semantics. It is
// checked like a submit (Idempotency-Key, Content-Type, size, JSON, shape) and answered like
// one: 202 with Location and Retry-After, or the earlier relaunch on a replay of its key.
func (h *handler) relaunch(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	key, body, ok := h.readCreate(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	req, draft, err := decodeRelaunch(body)
	if !h.decoded(w, r, err) {
		return
	}
	t, created, err := h.cfg.Engine.Relaunch(r.Context(), engine.Relaunch{
		Caller:         caller,
		TaskID:         id,
		Draft:          draft,
		IdempotencyKey: key,
		RequestHash:    requestHash(relaunchKey{Relaunch: id, Request: req}),
		Links:          h.links(r).base,
	})
	h.accepted(w, r, t, created, err)
}

// relaunchKey is what identifies a relaunch request for its Idempotency-Key.
type relaunchKey struct {
	Relaunch string              `json:"relaunch"`
	Request  api.RelaunchRequest `json:"request"`
}

// decodeRelaunch parses a relaunch body into its wire form and the draft the engine checks,
// field by field like a submit: only types are checked here.
func decodeRelaunch(body []byte) (api.RelaunchRequest, task.RelaunchDraft, error) {
	var (
		req   api.RelaunchRequest
		draft task.RelaunchDraft
	)
	seen := false
	err := decodeFields(body, func(name string, value json.RawMessage, pointer string, bad func(pointer, detail string)) error {
		switch name {
		case "devices":
			seen = true
			req.Devices = value
			var which string
			if json.Unmarshal(value, &which) == nil && !isNull(value) {
				draft.Which = which
				return nil
			}
			draft.DeviceIDs = decodeStrings(value, pointer, func(p, detail string) {
				if p == pointer {
					detail = `must be "failed", "all" or an array of device ids`
				}
				bad(p, detail)
			})
		case "args":
			args := decodeStrings(value, pointer, bad)
			req.Args, draft.Args = &args, &args
		case "timeoutSeconds":
			var n int
			if err := json.Unmarshal(value, &n); err != nil || isNull(value) {
				bad(pointer, "must be a whole number of seconds")
			}
			req.TimeoutSeconds, draft.TimeoutSeconds = &n, &n
		case "deliveryTimeoutSeconds":
			var n int
			if err := json.Unmarshal(value, &n); err != nil || isNull(value) {
				bad(pointer, "must be a whole number of seconds")
			}
			req.DeliveryTimeoutSeconds, draft.DeliveryTimeoutSeconds = &n, &n
		case "maxConcurrency":
			v := decodeString(value, pointer, bad)
			req.MaxConcurrency, draft.MaxConcurrency = &v, &v
		case "maxErrors":
			v := decodeString(value, pointer, bad)
			req.MaxErrors, draft.MaxErrors = &v, &v
		default:
			bad(pointer, "unknown field")
		}
		return nil
	})
	if err == nil && !seen {
		err = wrongTypes([]task.FieldError{{Pointer: "/devices", Detail: `devices is required: "failed", "all" or an array of device ids`}})
	}
	return req, draft, err
}
