package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

// defaultPollPause is the pause between plain polls when the server sends no Retry-After.
const defaultPollPause = 2 * time.Second

// Wait watches task id until it reaches a terminal state (completed, failed, timed_out or
// cancelled) and returns it then. onProgress, when not nil, is called with the task first and
// then each time it changes, from the calling goroutine.
//
// Wait long-polls: each request carries the task's ETag in If-None-Match and Prefer: wait, so
// the server holds it until the task changes or the wait runs out, and answers at once when
// it does. Where the server answers at once anyway (it ignores Prefer: it sends no
// Preference-Applied and answers well before the wait), Wait pauses as its Retry-After says
// between polls. A dropped connection or an overloaded server is retried
// with backoff (see RetryPolicy), so a Wait outlives network blips and server restarts.
//
// Wait returns when ctx ends, with an error wrapping ctx's; the task goes on running.
func (c *Client) Wait(ctx context.Context, id string, onProgress func(*api.Task)) (*api.Task, error) {
	var (
		last *api.Task
		etag string
	)
	for {
		start := c.now()
		p, err := c.poll(ctx, id, etag)
		if err != nil {
			return nil, err
		}
		if p.task != nil && (last == nil || p.task.Version != last.Version || p.task.Status != last.Status) {
			last, etag = p.task, p.etag
			if onProgress != nil {
				onProgress(last)
			}
			if api.Terminal(last.Status) {
				return last, nil
			}
			if c.pollWait > 0 {
				continue // long-poll for the next change at once
			}
		} else if c.pollWait > 0 && (p.held || c.now().Sub(start) >= c.pollWait/2) {
			continue // the server held the request: it long-polls, so ask again at once
		}
		pause := p.retryAfter
		if pause <= 0 {
			pause = defaultPollPause
		}
		if err := c.sleep(ctx, c.capPause(pause)); err != nil {
			return nil, fmt.Errorf("client: wait for task %s: %w", id, context.Cause(ctx))
		}
	}
}

// polled is one answer to a status poll: task is nil when the server said 304 Not Modified.
type polled struct {
	task       *api.Task
	etag       string
	retryAfter time.Duration
	// held says the server applied Prefer: wait, so an unchanged answer came after the wait.
	held bool
}

// poll reads task id once, long-polling when etag is known.
func (c *Client) poll(ctx context.Context, id, etag string) (polled, error) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
		if secs := int(c.pollWait / time.Second); secs > 0 {
			h.Set("Prefer", preferWait(secs))
		}
	}
	var t api.Task
	resp, err := c.doJSON(ctx, call{method: http.MethodGet, path: taskPath(id), header: h, retry: true}, &t)
	if err != nil {
		return polled{}, err
	}
	p := polled{etag: resp.Header.Get("ETag"), retryAfter: retryAfter(resp.Header, c.now()),
		held: strings.HasPrefix(resp.Header.Get("Preference-Applied"), "wait=")}
	if resp.StatusCode != http.StatusNotModified {
		p.task = &t
	}
	return p, nil
}
