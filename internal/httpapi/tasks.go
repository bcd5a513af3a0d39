package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// getTask is GET /tasks/{id}. It honours If-None-Match (304) and Prefer: wait=N, a long-poll
// that returns as soon as the task changes: the wait starts when the client's If-None-Match
// names the current version, or always when it sends none, and ends with the changed task
// (200), or at the deadline with 304 (If-None-Match still matching) or the unchanged task.
func (h *handler) getTask(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	t, err := h.cfg.Engine.Get(r.Context(), caller, r.PathValue("id"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	wait, prefer := preferWait(r)
	if prefer {
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(wait))
	}
	present, matched := noneMatch(r, t.Version)
	if wait > 0 && !t.Status.Terminal() && (!present || matched) {
		release, ok := h.streams.acquire(caller.Owner)
		if !ok {
			h.tooManyStreams(w, r)
			return
		}
		t, err = h.waitForChange(r, caller, t, time.Duration(wait)*time.Second)
		release()
		if r.Context().Err() != nil {
			return // the client went away; nobody reads an answer
		}
		if err != nil {
			h.error(w, r, err)
			return
		}
		_, matched = noneMatch(r, t.Version)
	}
	w.Header().Set("ETag", etag(t.Version))
	w.Header().Set("Cache-Control", "no-cache")
	if !t.Status.Terminal() {
		w.Header().Set("Retry-After", h.retryAfterFor(t))
	}
	if matched {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body, err := h.tasks.body(t, h.links(r))
	if err != nil {
		h.error(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, body)
}

// spuriousWakePause is how long pause waits.
const spuriousWakePause = 100 * time.Millisecond

// waitForChange waits up to d for t to get a version other than the one it has, and returns the
// task as it then is.
func (h *handler) waitForChange(r *http.Request, caller task.Caller, t *task.Task, d time.Duration) (*task.Task, error) {
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	from := t.Version
	for {
		if err := h.cfg.Watcher.Wait(ctx, t.ID, from); err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("httpapi: wait for task %s: %w", t.ID, err)
		}
		fresh, err := h.cfg.Engine.Get(r.Context(), caller, t.ID)
		if err != nil || fresh.Version != from {
			return fresh, err
		}
		pause(ctx)
	}
	return h.cfg.Engine.Get(r.Context(), caller, t.ID)
}

// getResult is GET /tasks/{id}/result. A task that has not finished has no result yet: that is
// a 409 problem (api.ProblemNotFinished) with the task's status and Retry-After, rather than a
// 404, because the resource exists and will have a result; the client should retry.
func (h *handler) getResult(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	t, err := h.cfg.Engine.Get(r.Context(), caller, r.PathValue("id"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	if !t.Status.Terminal() {
		h.error(w, r, &task.Error{Code: task.CodeNotFinished, Status: t.Status,
			Message: fmt.Sprintf("the task is %s; its result is ready once it finishes", t.Status)})
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, h.links(r).renderResult(t))
}

// cancel is DELETE /tasks/{id}; engine.Cancel documents the semantics. A task cancelled at
// once answers 200; one whose devices are being stopped answers 202 with Location and
// Retry-After; a finished task answers 409 with its status.
func (h *handler) cancel(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	t, err := h.cfg.Engine.Cancel(r.Context(), caller, r.PathValue("id"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	l := h.links(r)
	status := http.StatusOK
	if !t.Status.Terminal() {
		status = http.StatusAccepted
		w.Header().Set("Location", l.task(t.ID))
		w.Header().Set("Retry-After", h.retryAfterFor(t))
	}
	writeJSON(w, status, l.renderTask(t))
}

// listTasks is GET /tasks: the caller's tasks, newest first.
func (h *handler) listTasks(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	var p task.QueryParser
	q := listParams(&p, r.URL.Query(), true)
	if err := p.Err(); err != nil {
		h.error(w, r, err)
		return
	}
	q.Owner = caller.Owner
	list, err := h.taskList(r, q)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if list.Next != "" {
		w.Header().Set("Link", "<"+list.Next+`>; rel="next"`)
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, list)
}

// listParams reads the status, relaunchOf, limit and (when paged) cursor of a task listing into p.
func listParams(p *task.QueryParser, q url.Values, paged bool) task.ListQuery {
	var lq task.ListQuery
	if s, ok := single(p, q, "status"); ok {
		lq.Status = p.Status(s)
	}
	if s, ok := single(p, q, "relaunchOf"); ok {
		lq.RelaunchOf = p.TaskID("relaunchOf", s)
	}
	lq.Limit, lq.Cursor = pageParams(p, q)
	if !paged && lq.Cursor != "" {
		p.Bad("cursor", "the stream follows the first page of the list; page with GET /tasks")
	}
	return lq
}

// taskList reads one page of a task listing in its wire form.
func (h *handler) taskList(r *http.Request, q task.ListQuery) (api.TaskList, error) {
	page, err := h.cfg.Engine.List(r.Context(), q)
	if err != nil {
		return api.TaskList{}, err
	}
	l := h.links(r)
	list := api.TaskList{Items: make([]api.Task, 0, len(page.Tasks))}
	for _, t := range page.Tasks {
		list.Items = append(list.Items, l.renderTask(t))
	}
	if page.Next != "" {
		var filters []string
		if q.Status != "" {
			filters = append(filters, "status="+string(q.Status))
		}
		if q.RelaunchOf != "" {
			filters = append(filters, "relaunchOf="+url.QueryEscape(q.RelaunchOf))
		}
		list.Next = nextURL(l.tasks(), filters, q.Limit, page.Next)
	}
	return list, nil
}

// nextURL is the link to the page after this one, keeping the caller's filters, each an
// escaped "name=value". Statuses are plain words, so their commas are left readable.
func nextURL(path string, filters []string, limit int, cursor string) string {
	q := append([]string(nil), filters...)
	if limit > 0 {
		q = append(q, "limit="+strconv.Itoa(limit))
	}
	q = append(q, "cursor="+url.QueryEscape(cursor))
	return path + "?" + strings.Join(q, "&")
}
