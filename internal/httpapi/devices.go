package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// listDevices is GET /tasks/{id}/devices: a page of a task's devices in the order they were
// submitted, optionally filtered by status, and optionally narrowed to some of their members
// (fields=status): a dashboard drawing every device of a 10,000-device task needs each one's
// status, not the first 32,000 characters of its output.
func (h *handler) listDevices(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	q := r.URL.Query()
	var p task.QueryParser
	var statuses []task.DeviceStatus
	if vs, ok := q["status"]; ok {
		statuses = p.DeviceStatuses(vs)
	}
	var fields []string
	if s, ok := single(&p, q, "fields"); ok {
		fields = deviceFields(&p, s)
	}
	limit, cursor := pageParams(&p, q)
	if err := p.Err(); err != nil {
		h.error(w, r, err)
		return
	}
	id := r.PathValue("id")
	page, err := h.cfg.Engine.Devices(r.Context(), caller, id, task.DeviceQuery{Statuses: statuses, Limit: limit, Cursor: cursor})
	if err != nil {
		h.error(w, r, err)
		return
	}
	l := h.links(r)
	list := api.DeviceList{Items: make([]api.Device, 0, len(page.Devices))}
	for _, d := range page.Devices {
		list.Items = append(list.Items, l.renderDevice(id, d))
	}
	if page.Next != "" {
		var filters []string
		if len(statuses) > 0 {
			filters = append(filters, "status="+join(statuses, ","))
		}
		if fields != nil {
			filters = append(filters, "fields="+strings.Join(fields, ","))
		}
		list.Next = nextURL(l.devices(id), filters, limit, page.Next)
		w.Header().Set("Link", "<"+list.Next+`>; rel="next"`)
	}
	w.Header().Set("Cache-Control", "no-cache")
	if fields == nil {
		writeJSON(w, http.StatusOK, list)
		return
	}
	partial, err := narrow(list, fields)
	if err != nil {
		h.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, partial)
}

// deviceMembers are the JSON members of api.Device, which fields may name.
var deviceMembers = func() map[string]bool {
	m := map[string]bool{}
	rt := reflect.TypeFor[api.Device]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		m[name] = true
	}
	return m
}()

// deviceFields reads fields, a list of Device members separated by commas. The id is always
// sent, named or not.
func deviceFields(p *task.QueryParser, s string) []string {
	out := []string{"id"}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case !deviceMembers[f]:
			p.Bad("fields", "%q is not a member of a device", f)
		case !slices.Contains(out, f):
			out = append(out, f)
		}
	}
	return out
}

// partialDeviceList is a DeviceList whose devices carry only the members a caller named.
type partialDeviceList struct {
	Items []map[string]json.RawMessage `json:"items"`
	Next  string                       `json:"next,omitempty"`
}

// narrow keeps only fields of each device of list.
func narrow(list api.DeviceList, fields []string) (partialDeviceList, error) {
	out := partialDeviceList{Items: make([]map[string]json.RawMessage, 0, len(list.Items)), Next: list.Next}
	for _, d := range list.Items {
		data, err := json.Marshal(d)
		if err != nil {
			return out, err
		}
		var all map[string]json.RawMessage
		if err := json.Unmarshal(data, &all); err != nil {
			return out, err
		}
		item := make(map[string]json.RawMessage, len(fields))
		for _, f := range fields {
			if v, ok := all[f]; ok {
				item[f] = v
			}
		}
		out.Items = append(out.Items, item)
	}
	return out, nil
}

// getDevice is GET /tasks/{id}/devices/{deviceId}.
func (h *handler) getDevice(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	id := r.PathValue("id")
	d, err := h.cfg.Engine.Device(r.Context(), caller, id, r.PathValue("deviceId"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, h.links(r).renderDevice(id, d))
}

// cancelDevice is DELETE /tasks/{id}/devices/{deviceId}; engine.CancelDevice documents the
// semantics. A device cancelled at once (it had not started, or was cancelled already) answers
// 200; a running one being stopped answers 202 with Location and Retry-After until it has
// stopped; a device that ended otherwise, or one of a finished task, answers 409 with the
// current status.
func (h *handler) cancelDevice(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	id := r.PathValue("id")
	_, d, err := h.cfg.Engine.CancelDevice(r.Context(), caller, id, r.PathValue("deviceId"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	l := h.links(r)
	status := http.StatusOK
	if !d.Status.Terminal() {
		status = http.StatusAccepted
		w.Header().Set("Location", l.device(id, d.ID))
		w.Header().Set("Retry-After", h.retryAfter)
	}
	writeJSON(w, status, l.renderDevice(id, d))
}

// output is GET /tasks/{id}/devices/{deviceId}/output?stream=stdout|stderr: the device's full
// output, where the device resource holds only a truncated copy; with follow=true (and
// offset, the bytes the caller already has), as it is written (see follow). The owner and the device are
// checked through the engine before any output is opened. An output too large to answer with
// is a 303 to where it can be fetched (see OutputStore).
func (h *handler) output(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	q := r.URL.Query()
	var p task.QueryParser
	stream := "stdout"
	if s, ok := single(&p, q, "stream"); ok {
		if s != "stdout" && s != "stderr" {
			p.Bad("stream", "stream must be stdout or stderr")
		}
		stream = s
	}
	follow := false
	if s, ok := single(&p, q, "follow"); ok {
		switch s {
		case "true", "1":
			follow = true
		case "false", "0":
		default:
			p.Bad("follow", "follow must be true or false")
		}
	}
	var offset int64
	if s, ok := single(&p, q, "offset"); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		switch {
		case err != nil || n < 0:
			p.Bad("offset", "offset must be a whole number of bytes, 0 or more")
		case !follow:
			p.Bad("offset", "offset goes with follow=true")
		}
		offset = n
	}
	if err := p.Err(); err != nil {
		h.error(w, r, err)
		return
	}
	id, deviceID := r.PathValue("id"), r.PathValue("deviceId")
	d, err := h.cfg.Engine.Device(r.Context(), caller, id, deviceID)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if follow {
		h.follow(w, r, caller, d, stream, offset)
		return
	}
	switch {
	case h.cfg.Output == nil:
		h.error(w, r, task.Errorf(task.CodeNotFound, "this deployment keeps no output beyond the device's inline copy"))
		return
	case d.Status == task.DevicePending:
		h.error(w, r, task.Errorf(task.CodeNotFound, "device %s has not started, so it has no output yet", deviceID))
		return
	}
	out, err := h.cfg.Output.OpenOutput(r.Context(), d, stream)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.sendOutput(w, r, d, stream, out)
}

// sendOutput answers with one stream of device d's output: its body as text, or a 303 to
// where it is served.
func (h *handler) sendOutput(w http.ResponseWriter, r *http.Request, d *task.Device, stream string, out Output) {
	if out.Body == nil {
		w.Header().Set("Location", out.Redirect)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	defer out.Body.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, out.Body); err != nil && r.Context().Err() == nil {
		// The status is already sent; all that is left is to say why the body stopped short.
		h.log.WarnContext(r.Context(), "sending output failed", "request_id", requestID(r),
			"task_id", r.PathValue("id"), "device_id", d.ID, "stream", stream, "err", err)
	}
}
