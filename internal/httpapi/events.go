package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// events is GET /tasks/{id}/events, a Server-Sent Events stream of the task: one `task` event,
// with the version as its id, for every change, ending after a terminal state.
//
// A reconnecting client sends back the last id it saw (Last-Event-ID, or ?lastEventId= where a
// client cannot set headers) and gets only newer states. A client that has already seen the
// final state gets 204, which tells an EventSource to stop reconnecting. An id ahead of the
// task's version was not sent by this task's stream (a client mixing up tasks, or a store
// restored from a backup), so it gets the current state, as a client that sent none would;
// either way the stream ends after the final state.
//
// Waits last at most keepAlive each: the in-process broker forgets tasks nobody has touched for
// a minute, and proxies drop silent connections, so each quiet round ends with a comment.
//
// The stream opens with a retry field (streamRetry), which tells an EventSource how soon to
// reconnect, and ends with a comment that says why and the retry field again. A request with a
// deadline (a Lambda invocation, which API Gateway streams for at most 15 minutes) ends its
// stream that way just before it, so the client reconnects at once with Last-Event-ID and
// misses nothing; after a terminal state the reconnection gets 204.
func (h *handler) events(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	last, err := lastEventID(r)
	if err != nil {
		var p task.QueryParser
		p.Bad("lastEventId", "%s", err.Error())
		h.error(w, r, p.Err())
		return
	}
	id := r.PathValue("id")
	t, err := h.cfg.Engine.Get(r.Context(), caller, id)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if last > t.Version {
		last = 0
	}
	if t.Status.Terminal() && last == t.Version {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	es, release, ok := h.startStream(w, r, caller.Owner)
	if !ok {
		return
	}
	defer release()
	rc, retry := es.rc, es.retry
	l := h.links(r)
	send := func(t *task.Task) error {
		data, err := json.Marshal(l.renderTask(t))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: task\ndata: %s\n\n", t.Version, data); err != nil {
			return err
		}
		last = t.Version
		h.log.DebugContext(r.Context(), "event stream sent", "request_id", requestID(r), "task_id", id, "version", t.Version)
		return rc.Flush()
	}
	if t.Version > last {
		err = send(t)
	} else {
		err = rc.Flush()
	}
	ending := "the task has ended"
	for err == nil && !t.Status.Terminal() {
		changed, over, werr := h.awaitChange(w, r, es, func(ctx context.Context) error { return h.cfg.Watcher.Wait(ctx, id, last) })
		if r.Context().Err() != nil {
			return // the client went away
		}
		if over {
			ending = streamOver
			break
		}
		if err = werr; err != nil || !changed {
			continue
		}
		if t, err = h.cfg.Engine.Get(r.Context(), caller, id); err != nil {
			break
		}
		if t.Version > last {
			err = send(t)
		} else {
			pause(r.Context())
		}
	}
	if err == nil {
		if _, err = io.WriteString(w, ": "+ending+"\n"+retry); err == nil {
			err = rc.Flush()
		}
	}
	if err != nil && r.Context().Err() == nil {
		// The client reconnects with Last-Event-ID and misses nothing.
		h.log.WarnContext(r.Context(), "event stream ended early", "request_id", requestID(r), "task_id", id, "err", err)
	}
}

// streamOver is the last comment of a stream whose request's time is up.
const streamOver = "the stream ends here; reconnect with Last-Event-ID"

// eventStream is an event stream under way: its writer's controller, its retry field, and
// the time it must end by when its request has a deadline (bounded).
type eventStream struct {
	rc      *http.ResponseController
	retry   string
	end     time.Time
	bounded bool
}

// startStream takes one of owner's places for a stream (answering 503 when none is left),
// answers r with an event stream's headers, and opens it with the retry field (streamRetry).
// ok is false when there is nothing more to send: no place, a HEAD that has its whole answer,
// or a client that cannot take the first field. Otherwise the caller calls release at the end.
func (h *handler) startStream(w http.ResponseWriter, r *http.Request, owner string) (es *eventStream, release func(), ok bool) {
	if release, ok = h.streams.acquire(owner); !ok {
		h.tooManyStreams(w, r)
		return nil, nil, false
	}
	es = &eventStream{rc: http.NewResponseController(w), retry: fmt.Sprintf("retry: %d\n\n", streamRetry.Milliseconds())}
	// A stream outlives any write timeout the server sets for ordinary responses.
	_ = es.rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", api.MediaEventStream)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		release() // the headers are the whole answer; a HEAD must not hold the connection
		return nil, nil, false
	}
	if _, err := io.WriteString(w, es.retry); err != nil {
		release()
		return nil, nil, false
	}
	es.end, es.bounded = r.Context().Deadline()
	es.end = es.end.Add(-streamEndMargin)
	return es, release, true
}

// awaitChange waits with wait for at most keepAlive, and never past the end of a bounded
// stream. A quiet round ends with a keep-alive comment on w, and changed false; wait's return
// before its deadline is a change. over says the stream's time is up: the caller ends it.
func (h *handler) awaitChange(w io.Writer, r *http.Request, es *eventStream, wait func(context.Context) error) (changed, over bool, err error) {
	end, bounded, rc := es.end, es.bounded, es.rc
	d := h.keepAlive
	if bounded {
		if d = min(d, time.Until(end)); d <= 0 {
			return false, true, nil
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	werr := wait(ctx)
	quiet := ctx.Err() != nil
	cancel()
	switch {
	case r.Context().Err() != nil:
		return false, false, r.Context().Err()
	case quiet && bounded && !time.Now().Before(end):
		return false, true, nil
	case quiet:
		if _, err = fmt.Fprint(w, ": keep-alive\n\n"); err == nil {
			err = rc.Flush()
		}
		h.log.DebugContext(r.Context(), "event stream kept alive", "request_id", requestID(r), "path", r.URL.Path)
		return false, false, err
	}
	return werr == nil, false, werr
}

// streamRetry is the reconnection time an event stream asks of its client (the retry field).
const streamRetry = time.Second

// streamEndMargin is how long before its request's deadline a stream ends itself, leaving time
// for the last field to reach the client.
const streamEndMargin = 500 * time.Millisecond

// lastEventID returns the version a reconnecting client last saw, or 0 when it saw none (task
// versions start at 1).
func lastEventID(r *http.Request) (int64, error) {
	s := r.Header.Get("Last-Event-ID")
	if s == "" {
		s = r.URL.Query().Get("lastEventId")
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("the last event id must be an event id this stream sent, got %q", s)
	}
	return n, nil
}

// tooManyStreams answers an event stream or long-poll past the caps of Config.MaxStreams and
// Config.MaxStreamsPerOwner.
func (h *handler) tooManyStreams(w http.ResponseWriter, r *http.Request) {
	h.error(w, r, task.Errorf(task.CodeUnavailable,
		"too many event streams and long-polls are open; retry later, or poll without Prefer: wait"))
}

// pause spaces out re-reads after a watcher woke without the stored task having changed (an
// eventually consistent read), so such a wait cannot spin.
func pause(ctx context.Context) {
	pauseFor(ctx, spuriousWakePause)
}

// pauseFor waits d, or until ctx ends.
func pauseFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
