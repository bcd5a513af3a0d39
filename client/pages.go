package client

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetrun/fleetrun/api"
)

// ListOptions filters and pages List.
type ListOptions struct {
	// Status keeps only tasks in this status; empty keeps all.
	Status string
	// RelaunchOf keeps only the tasks relaunched from this task (its relaunches link).
	RelaunchOf string
	// PageSize is how many tasks each request asks for; zero lets the server choose.
	PageSize int
}

// List iterates over the caller's tasks, newest first, fetching pages as the loop needs them.
// An error ends the iteration: it is yielded once, with a zero Task.
//
//	for t, err := range c.List(ctx, client.ListOptions{Status: api.StatusRunning}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(t.ID)
//	}
func (c *Client) List(ctx context.Context, opts ListOptions) iter.Seq2[api.Task, error] {
	q := url.Values{}
	if opts.Status != "" {
		q.Set("status", opts.Status)
	}
	if opts.RelaunchOf != "" {
		q.Set("relaunchOf", opts.RelaunchOf)
	}
	if opts.PageSize > 0 {
		q.Set("limit", strconv.Itoa(opts.PageSize))
	}
	return paginate(ctx, c, "/tasks", q, func(p *api.TaskList) ([]api.Task, string) { return p.Items, p.Next })
}

// DeviceOptions filters and pages Devices.
type DeviceOptions struct {
	// Statuses keeps only devices in one of these statuses (api.Device* constants); empty
	// keeps all.
	Statuses []string
	// PageSize is how many devices each request asks for; zero lets the server choose.
	PageSize int
}

// Devices iterates over the devices of task id with their state, exit code and the beginning
// of their output (see Output for all of it). An error ends the iteration: it is yielded once,
// with a zero Device.
func (c *Client) Devices(ctx context.Context, id string, opts DeviceOptions) iter.Seq2[api.Device, error] {
	q := url.Values{}
	if len(opts.Statuses) > 0 {
		q.Set("status", strings.Join(opts.Statuses, ","))
	}
	if opts.PageSize > 0 {
		q.Set("limit", strconv.Itoa(opts.PageSize))
	}
	return paginate(ctx, c, taskPath(id, "devices"), q, func(p *api.DeviceList) ([]api.Device, string) { return p.Items, p.Next })
}

// InventoryOptions filters and pages Inventory.
type InventoryOptions struct {
	// Tags keeps the devices whose tag, for every name here, has one of the values: the rule
	// of a submit's targets.
	Tags map[string][]string
	// PageSize is how many devices each request asks for; zero lets the server choose.
	PageSize int
}

// Inventory iterates over the devices a submit may target by tag (GET /devices): locally the
// server's inventory file, on AWS the SSM managed nodes. An error ends the iteration: it is
// yielded once, with a zero InventoryDevice.
func (c *Client) Inventory(ctx context.Context, opts InventoryOptions) iter.Seq2[api.InventoryDevice, error] {
	q := url.Values{}
	for name, values := range opts.Tags {
		q.Set("tag:"+name, strings.Join(values, ","))
	}
	if opts.PageSize > 0 {
		q.Set("limit", strconv.Itoa(opts.PageSize))
	}
	return paginate(ctx, c, "/devices", q, func(p *api.InventoryList) ([]api.InventoryDevice, string) { return p.Items, p.Next })
}

// paginate iterates over the items of the pages at path, following each page's next link.
//
// Only the next link's query (which holds the opaque cursor) is used: the path stays the one
// the client built on its endpoint, so a server that sees itself under another host or base
// path (behind a proxy, an API Gateway stage) cannot send the client, and its credentials,
// elsewhere.
func paginate[P any, T any](ctx context.Context, c *Client, path string, q url.Values, split func(*P) ([]T, string)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for {
			var page P
			if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: path, query: q, retry: true}, &page); err != nil {
				yield(zero, err)
				return
			}
			items, next := split(&page)
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			u, err := url.Parse(next)
			if err != nil {
				yield(zero, fmt.Errorf("client: next page link %q: %w", next, err))
				return
			}
			nq := u.Query()
			if len(items) == 0 && nq.Encode() == q.Encode() {
				yield(zero, fmt.Errorf("client: GET %s: the server's next link %q makes no progress", path, next))
				return
			}
			q = nq
		}
	}
}
