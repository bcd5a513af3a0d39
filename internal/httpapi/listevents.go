package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// listEventsPause is the least time between two reads of a followed task list. A running task
// is written once per device update, thousands of times a minute in a large run, and a viewer
// of the list needs none of those in between: each event carries the whole page.
const listEventsPause = 250 * time.Millisecond

// watchTasks is GET /tasks/events, a Server-Sent Events stream of the caller's task list: the
// first page of GET /tasks with the same status and limit, sent whole as a `tasks` event when
// it starts and again whenever it changes (a new task, or a change to a task on the page).
// Sending the page rather than the changed task keeps a client simple and right: a task that
// leaves a status filter, or falls off the page, is simply no longer in the next event.
//
// The event's id is a digest of the page (each task's id and version, with the query), so a
// client that reconnects with Last-Event-ID gets the page again only if it has changed. The
// stream opens with a retry field and ends only with its request's time (a Lambda's, ending with
// a comment and the retry field again, as a task's stream does); it counts against the same caps
// as a task's stream.
func (h *handler) watchTasks(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	owner := caller.Owner
	var p task.QueryParser
	q := listParams(&p, r.URL.Query(), false)
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("lastEventId")
	}
	if len(last) > 64 {
		p.Bad("lastEventId", "the last event id must be an event id this stream sent")
	}
	if err := p.Err(); err != nil {
		h.error(w, r, err)
		return
	}
	q.Owner = owner
	mark := h.cfg.Watcher.OwnerMark(owner)
	list, err := h.taskList(r, q)
	if err != nil {
		h.error(w, r, err)
		return
	}
	es, release, ok := h.startStream(w, r, owner)
	if !ok {
		return
	}
	defer release()
	rc, retry := es.rc, es.retry
	send := func(list api.TaskList) error {
		id := listDigest(q, list)
		if id == last {
			return nil
		}
		data, err := json.Marshal(list)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %s\nevent: tasks\ndata: %s\n\n", id, data); err != nil {
			return err
		}
		last = id
		return rc.Flush()
	}
	if err = send(list); err == nil {
		err = rc.Flush()
	}
	for err == nil {
		changed, over, werr := h.awaitChange(w, r, es, func(ctx context.Context) error { return h.cfg.Watcher.WaitOwner(ctx, owner, mark) })
		if r.Context().Err() != nil {
			return // the client went away
		}
		if over {
			if _, err = io.WriteString(w, ": "+streamOver+"\n"+retry); err == nil {
				err = rc.Flush()
			}
			return
		}
		if err = werr; err != nil || !changed {
			continue
		}
		pauseFor(r.Context(), listEventsPause)
		mark = h.cfg.Watcher.OwnerMark(owner)
		if list, err = h.taskList(r, q); err == nil {
			err = send(list)
		}
	}
	if r.Context().Err() == nil {
		// The client reconnects with Last-Event-ID and misses nothing.
		h.log.WarnContext(r.Context(), "task list stream ended early", "request_id", requestID(r), "err", err)
	}
}

// listDigest identifies a page of a task listing by its query and each task's id and version,
// which rises with every write.
func listDigest(q task.ListQuery, list api.TaskList) string {
	d := fnv.New64a()
	fmt.Fprintf(d, "%s\x00%s\x00%d\x00", q.Status, q.RelaunchOf, q.Limit)
	for _, t := range list.Items {
		d.Write([]byte(t.ID))
		d.Write(binary.BigEndian.AppendUint64([]byte{0}, uint64(t.Version)))
	}
	return strconv.FormatUint(d.Sum64(), 36)
}
