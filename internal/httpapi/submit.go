package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// submit is POST /tasks. The checks run from the cheapest to the dearest, and nothing is stored
// or queued unless every one passes: Idempotency-Key (400), Content-Type (415), size (413),
// JSON syntax (400), JSON shape (422), then the engine's validation (422).
func (h *handler) submit(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	key, body, ok := h.readCreate(w, r)
	if !ok {
		return
	}
	req, draft, err := decodeSubmit(body)
	if !h.decoded(w, r, err) {
		return
	}
	t, created, err := h.cfg.Engine.Submit(r.Context(), engine.Submission{
		Owner:          caller.Owner,
		Draft:          draft,
		IdempotencyKey: key,
		RequestHash:    requestHash(req),
		Links:          h.links(r).base,
	})
	h.accepted(w, r, t, created, err)
}

// readCreate reads the Idempotency-Key and the JSON body of a request that creates a task,
// answering the problem and returning false when either is refused: Idempotency-Key (400),
// Content-Type (415), size (413), a body that does not arrive in time (408).
func (h *handler) readCreate(w http.ResponseWriter, r *http.Request) (key string, body []byte, ok bool) {
	key, err := idempotencyKey(r)
	if err != nil {
		h.problem(w, r, problemFor(http.StatusBadRequest, api.ProblemMalformed, err.Error()))
		return "", nil, false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != api.MediaJSON {
		h.problem(w, r, problemFor(http.StatusUnsupportedMediaType, api.ProblemUnsupportedMedia,
			"the body must be sent as "+api.MediaJSON))
		return "", nil, false
	}
	tooLarge := problemFor(http.StatusRequestEntityTooLarge, api.ProblemTooLarge,
		fmt.Sprintf("the body may be at most %d bytes", h.cfg.MaxBodyBytes))
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.problem(w, r, tooLarge)
		return "", nil, false
	}
	body, err = h.readBody(w, r)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		h.problem(w, r, tooLarge)
		return "", nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		h.problem(w, r, problemFor(http.StatusRequestTimeout, api.ProblemTimeout,
			fmt.Sprintf("the body did not arrive within %s", h.cfg.BodyTimeout)))
		return "", nil, false
	case err != nil:
		h.problem(w, r, problemFor(http.StatusBadRequest, api.ProblemMalformed, "the body could not be read"))
		return "", nil, false
	}
	return key, body, true
}

// decoded answers a body that did not decode, not JSON (400) or of the wrong shape (422), and
// reports whether it did.
func (h *handler) decoded(w http.ResponseWriter, r *http.Request, err error) bool {
	var m malformed
	switch {
	case errors.As(err, &m):
		h.problem(w, r, problemFor(http.StatusBadRequest, api.ProblemMalformed, string(m)))
		return false
	case err != nil:
		h.error(w, r, err)
		return false
	}
	return true
}

// accepted answers a request that created task t, or replayed its creation: 202, Location,
// Retry-After and the task.
func (h *handler) accepted(w http.ResponseWriter, r *http.Request, t *task.Task, created bool, err error) {
	if err != nil {
		h.error(w, r, err)
		return
	}
	l := h.links(r)
	w.Header().Set("Location", l.task(t.ID))
	w.Header().Set("Retry-After", h.retryAfter)
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusAccepted, l.renderTask(t))
}

// readBody reads a request body of at most MaxBodyBytes within BodyTimeout. The deadline is
// the connection's, so it is lifted again once the body is in: the server goes on reading the
// connection to notice a client that leaves, and a deadline left behind would end the request
// then.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if h.cfg.BodyTimeout > 0 {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout)); err == nil {
			defer rc.SetReadDeadline(time.Time{})
		}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
}

// idempotencyKey returns the request's Idempotency-Key, "" when none was sent. A key is 1 to
// 255 printable ASCII characters, sent once.
func idempotencyKey(r *http.Request) (string, error) {
	values := r.Header.Values(api.HeaderIdempotencyKey)
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", errors.New("Idempotency-Key may be sent only once")
	}
	key := values[0]
	if key == "" || len(key) > api.MaxIdempotencyKeyLength {
		return "", fmt.Errorf("Idempotency-Key must be 1 to %d characters", api.MaxIdempotencyKeyLength)
	}
	for i := range len(key) {
		if key[i] < ' ' || key[i] > '~' {
			return "", errors.New("Idempotency-Key may contain only printable ASCII characters")
		}
	}
	return key, nil
}

// requestHash identifies a request by its content, not its bytes: the decoded request is
// marshalled again, so whitespace and key order do not make two equal requests differ. A
// relaunch's request names its kind and its task, so that it never matches a submit or the
// relaunch of another task.
func requestHash(req any) string {
	b, _ := json.Marshal(req)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// malformed is a body that is not JSON at all (400), as opposed to JSON of the wrong shape
// (422, a *task.Error).
type malformed string

func (m malformed) Error() string { return string(m) }

// maxShapeErrors bounds the field errors of one answer, so a hostile body cannot make it huge.
const maxShapeErrors = 100

// decodeSubmit parses a submit body into the wire request, which identifies the body for
// idempotency, and the draft the engine validates, which knows which settings were sent. Each
// field is decoded on its own so that a value of the wrong type is named by its exact JSON
// pointer ("/deviceIds/3"), which encoding/json's own errors do not give, and every bad field
// is reported at once. Only types are checked here: the rules are the domain's.
func decodeSubmit(body []byte) (api.SubmitRequest, task.Draft, error) {
	var (
		req   api.SubmitRequest
		draft task.Draft
	)
	err := decodeFields(body, func(name string, value json.RawMessage, pointer string, bad func(pointer, detail string)) error {
		switch name {
		case "deviceIds":
			req.DeviceIDs = decodeStrings(value, pointer, bad)
		case "args":
			req.Args = decodeStrings(value, pointer, bad)
		case "scriptUrl":
			req.ScriptURL = decodeString(value, pointer, bad)
		case "maxConcurrency":
			req.MaxConcurrency = decodeString(value, pointer, bad)
			draft.MaxConcurrency = &req.MaxConcurrency
		case "maxErrors":
			req.MaxErrors = decodeString(value, pointer, bad)
			draft.MaxErrors = &req.MaxErrors
		case "notify":
			var err error
			if req.Notify, draft.Notify, err = decodeNotify(value, pointer, bad); err != nil {
				return err
			}
		case "timeoutSeconds":
			if err := json.Unmarshal(value, &req.TimeoutSeconds); err != nil || isNull(value) {
				bad(pointer, "must be a whole number of seconds")
			}
			draft.TimeoutSeconds = &req.TimeoutSeconds
		case "targets":
			req.Targets = decodeTargets(value, pointer, bad)
			draft.Targets = make([]task.Target, len(req.Targets))
			for i, t := range req.Targets {
				draft.Targets[i] = task.Target{Key: t.Key, Values: t.Values}
			}
		case "includeOffline":
			if err := json.Unmarshal(value, &req.IncludeOffline); err != nil || isNull(value) {
				bad(pointer, "must be true or false")
			}
			draft.IncludeOffline = req.IncludeOffline
		case "deliveryTimeoutSeconds":
			if err := json.Unmarshal(value, &req.DeliveryTimeoutSeconds); err != nil || isNull(value) {
				bad(pointer, "must be a whole number of seconds")
			}
			draft.DeliveryTimeoutSeconds = &req.DeliveryTimeoutSeconds
		default:
			bad(pointer, "unknown field")
		}
		return nil
	})
	if err != nil {
		return req, draft, err
	}
	draft.DeviceIDs, draft.ScriptURL, draft.Args = req.DeviceIDs, req.ScriptURL, req.Args
	return req, draft, nil
}

// decodeFields parses body as one JSON object (decodeObject) and hands each of its members, in
// the order of their names, to each, with its JSON pointer and bad, which collects what is
// wrong with it (at most maxShapeErrors); it returns those as one 422. An error each returns (a
// malformed member) ends the decoding and is returned as it is.
func decodeFields(body []byte, each func(name string, value json.RawMessage, pointer string, bad func(pointer, detail string)) error) error {
	fields, err := decodeObject(body)
	if err != nil {
		return err
	}
	var errs []task.FieldError
	bad := func(pointer, detail string) {
		if len(errs) < maxShapeErrors {
			errs = append(errs, task.FieldError{Pointer: pointer, Detail: detail})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if err := each(name, fields[name], "/"+escapePointer(name), bad); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return wrongTypes(errs)
	}
	return nil
}

// wrongTypes is the 422 of a body whose fields have the wrong types.
func wrongTypes(errs []task.FieldError) error {
	return &task.Error{Code: task.CodeInvalid, Message: "the request body has fields of the wrong type", Fields: errs}
}

// decodeObject parses a body that must be one JSON object into its members (objectMembers):
// malformed (400) when it is not JSON, a 422 when it is JSON but not an object.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return nil, malformed("the body is empty; it must be a JSON object")
		case errors.As(err, &se):
			return nil, malformed(fmt.Sprintf("the body is not valid JSON: %s (at byte %d)", se, se.Offset))
		}
		return nil, malformed("the body is not valid JSON: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, malformed("the body has more data after its JSON value")
	}
	if raw[0] != '{' {
		return nil, wrongTypes([]task.FieldError{{Pointer: "", Detail: "the body must be a JSON object"}})
	}
	return objectMembers(raw)
}

// objectMembers returns the members of a JSON object by name. A name that appears twice is
// malformed: parsers disagree on which value wins (encoding/json takes the last, many proxies
// and validators the first), so a body that one reads as harmless could run as another.
func objectMembers(raw json.RawMessage) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, malformed("the body is not valid JSON: " + err.Error())
	}
	fields := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed("the body is not valid JSON: " + err.Error())
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, malformed("the body is not valid JSON: " + err.Error())
		}
		if _, dup := fields[name]; dup {
			return nil, malformed(fmt.Sprintf("the body has the key %q more than once; each key may appear only once", truncateKey(name)))
		}
		fields[name] = value
	}
	return fields, nil
}

// truncateKey shortens a member name for an error message.
func truncateKey(name string) string {
	if len(name) > 64 {
		return name[:64] + "…"
	}
	return name
}

// decodeTargets decodes an array of {"key": string, "values": [string]} objects, naming each
// member of the wrong type, or unknown, by its pointer.
func decodeTargets(value json.RawMessage, pointer string, bad func(pointer, detail string)) []api.Target {
	var items []json.RawMessage
	if err := json.Unmarshal(value, &items); err != nil || isNull(value) {
		bad(pointer, `must be an array of {"key": "tag:Name", "values": [...]} objects`)
		return nil
	}
	out := make([]api.Target, len(items))
	for i, item := range items {
		p := fmt.Sprintf("%s/%d", pointer, i)
		fields, err := objectMembers(item)
		if err != nil || len(item) == 0 || item[0] != '{' {
			bad(p, `must be an object {"key": "tag:Name", "values": [...]}`)
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			switch name {
			case "key":
				out[i].Key = decodeString(fields[name], p+"/key", bad)
			case "values":
				out[i].Values = decodeStrings(fields[name], p+"/values", bad)
			default:
				bad(p+"/"+escapePointer(name), "unknown field")
			}
		}
	}
	return out
}

// decodeNotify decodes the notify member: an object with url (a string) and events (an array of
// strings, optional), and nothing else. A member named twice is malformed, as at the top.
func decodeNotify(value json.RawMessage, pointer string, bad func(pointer, detail string)) (*api.Notify, *task.NotifyDraft, error) {
	if len(value) == 0 || value[0] != '{' {
		bad(pointer, "must be an object with url and events")
		return nil, nil, nil
	}
	members, err := objectMembers(value)
	if err != nil {
		return nil, nil, err
	}
	n, d := &api.Notify{}, &task.NotifyDraft{}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		v, p := members[name], pointer+"/"+escapePointer(name)
		switch name {
		case "url":
			n.URL = decodeString(v, p, bad)
		case "events":
			n.Events = decodeStrings(v, p, bad)
			d.Events = n.Events
			if d.Events == nil {
				d.Events = []string{}
			}
		default:
			bad(p, "unknown field")
		}
	}
	d.URL = n.URL
	return n, d, nil
}

func decodeString(value json.RawMessage, pointer string, bad func(pointer, detail string)) string {
	var s string
	if err := json.Unmarshal(value, &s); err != nil || isNull(value) {
		bad(pointer, "must be a string")
	}
	return s
}

func decodeStrings(value json.RawMessage, pointer string, bad func(pointer, detail string)) []string {
	var items []json.RawMessage
	if err := json.Unmarshal(value, &items); err != nil || isNull(value) {
		bad(pointer, "must be an array of strings")
		return nil
	}
	out := make([]string, len(items))
	for i, item := range items {
		if err := json.Unmarshal(item, &out[i]); err != nil || isNull(item) {
			bad(fmt.Sprintf("%s/%d", pointer, i), "must be a string")
		}
	}
	return out
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }

// escapePointer escapes a member name for a JSON pointer (RFC 6901).
func escapePointer(s string) string { return pointerEscaper.Replace(s) }

// pointerEscaper escapes a JSON Pointer token (RFC 6901); built once, as a Replacer is costly
// to build and safe to share.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
