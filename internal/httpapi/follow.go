package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// follow is GET /tasks/{id}/devices/{deviceId}/output?follow=true: the device's output as it
// is written, plain text, chunked, ending when the device ends. Every FollowInterval the
// handler sends what was written since it last looked and reads the device again; once the
// device has ended it sends the rest and closes. A device that has not started yet is waited
// for. A stream may also end before its device does — the request's time is up (on AWS, API
// Gateway's 15 minutes for a streamed answer), or the connection was cut — and then a caller
// follows again and skips what it already has (the client package does). Followed outputs
// count against the same caps as event streams.
//
// Where the output cannot be read while it is written (no Config.Follow: on AWS without the
// stack's CloudWatch output), there is nothing to stream: the handler waits, for at most
// Config.FollowWait and within the request's time, for the device to end and then answers with
// its whole output (the output store's, or the device's inline copy where there is none). A
// device still working when the wait is over is a 409 with Retry-After; following again
// continues the wait.
func (h *handler) follow(w http.ResponseWriter, r *http.Request, caller task.Caller, d *task.Device, stream string, offset int64) {
	release, ok := h.streams.acquire(caller.Owner)
	if !ok {
		h.tooManyStreams(w, r)
		return
	}
	defer release()
	follower := h.cfg.Follow
	if follower == nil {
		h.followToTheEnd(w, r, caller, d, stream, offset)
		return
	}
	ctx := r.Context()
	id := r.PathValue("id")
	rc := http.NewResponseController(w)
	// A followed output outlives any write timeout the server sets for ordinary responses.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	if r.Method == http.MethodHead {
		return
	}
	var out io.ReadCloser
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	ended := d.Status.Terminal()
	ticker := time.NewTicker(h.cfg.FollowInterval)
	defer ticker.Stop()
	for {
		if out == nil {
			var err error
			out, err = follower.FollowOutput(ctx, id, d.ID, stream)
			if err != nil && !task.IsCode(err, task.CodeNotFound) {
				h.followFailed(r, d, stream, err)
				return
			}
			if out != nil && offset > 0 {
				out = &skipper{ReadCloser: out, n: offset}
			}
		}
		if out != nil {
			if err := copyAvailable(w, rc, out, buf); err != nil {
				h.followFailed(r, d, stream, err)
				return
			}
		}
		// The device was seen ended before this last read, so nothing more will be written.
		if ended {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cur, err := h.cfg.Engine.Device(ctx, caller, id, d.ID)
		if err != nil {
			h.followFailed(r, d, stream, err)
			return
		}
		ended = cur.Status.Terminal()
	}
}

// copyAvailable sends what out holds now, flushing each chunk, and returns at io.EOF.
func copyAvailable(w io.Writer, rc *http.ResponseController, out io.Reader, buf []byte) error {
	for {
		n, err := out.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// followFailed logs why a followed output stopped short: its status is sent already.
func (h *handler) followFailed(r *http.Request, d *task.Device, stream string, err error) {
	if r.Context().Err() != nil {
		return // the caller went away
	}
	h.log.WarnContext(r.Context(), "following output failed", "request_id", requestID(r),
		"task_id", r.PathValue("id"), "device_id", d.ID, "stream", stream, "err", err)
}

// followToTheEnd waits for device d to end, for at most FollowWait and within the request's
// time, and answers with its whole output, as GET …/output answers it (a 303 to a presigned
// URL for a large one), else the device's inline copy; a device still working then is a 409
// with Retry-After.
func (h *handler) followToTheEnd(w http.ResponseWriter, r *http.Request, caller task.Caller, d *task.Device, stream string, offset int64) {
	ctx := r.Context()
	if h.cfg.FollowWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.FollowWait)
		defer cancel()
	}
	id := r.PathValue("id")
	ticker := time.NewTicker(h.cfg.FollowInterval)
	defer ticker.Stop()
	for !d.Status.Terminal() {
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < 2*h.cfg.FollowInterval {
			break // answer while there is still time to
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
		if ctx.Err() != nil {
			break
		}
		cur, err := h.cfg.Engine.Device(r.Context(), caller, id, d.ID)
		if err != nil {
			h.error(w, r, err)
			return
		}
		d = cur
	}
	if !d.Status.Terminal() {
		h.error(w, r, &task.Error{Code: task.CodeNotFinished, DeviceStatus: d.Status, Message: fmt.Sprintf(
			"device %s is still %s; its output is answered whole once it ends here: follow again", d.ID, d.Status)})
		return
	}
	out, err := h.wholeOutput(context.WithoutCancel(r.Context()), d, stream)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if out.Body != nil && offset > 0 {
		out.Body = &skipper{ReadCloser: out.Body, n: offset}
	}
	h.sendOutput(w, r, d, stream, out)
}

// wholeOutput is the whole output of ended device d: the output store's, else the device's
// inline copy. A store that has none of a device that never ran is no error: its output is
// empty.
func (h *handler) wholeOutput(ctx context.Context, d *task.Device, stream string) (Output, error) {
	if h.cfg.Output != nil {
		out, err := h.cfg.Output.OpenOutput(ctx, d, stream)
		if !task.IsCode(err, task.CodeNotFound) {
			return out, err
		}
	}
	return Output{Body: io.NopCloser(strings.NewReader(inlineCopy(d, stream)))}, nil
}

// inlineCopy is the copy of a stream the device record holds.
func inlineCopy(d *task.Device, stream string) string {
	if stream == "stderr" {
		return d.Stderr
	}
	return d.Stdout
}

// skipper drops the first n bytes of what it reads: the part of an output a caller that
// follows again already has (offset). It keeps count across reads that come up short, as a
// follower's do while the output is being written.
type skipper struct {
	io.ReadCloser
	n int64
}

func (s *skipper) Read(p []byte) (int, error) {
	for s.n > 0 {
		n, err := s.ReadCloser.Read(p[:min(int64(len(p)), s.n)])
		s.n -= int64(n)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, nil
		}
	}
	return s.ReadCloser.Read(p)
}
