package client

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/fleetrun/fleetrun/api"
)

// pagedServer serves n tasks or devices in pages of the requested size, with next links on a
// host the client must not call.
func pagedServer(t *testing.T, n int, requests *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit == 0 {
			limit = 100
		}
		from, _ := strconv.Atoi(q.Get("cursor"))
		to := min(from+limit, n)
		next := ""
		if to < n {
			nq := r.URL.Query()
			nq.Set("cursor", strconv.Itoa(to))
			next = "http://elsewhere.invalid/other" + r.URL.Path + "?" + nq.Encode()
		}
		switch r.URL.Path {
		case "/tasks":
			page := api.TaskList{Items: []api.Task{}, Next: next}
			for i := from; i < to; i++ {
				page.Items = append(page.Items, api.Task{ID: fmt.Sprintf("t%d", i), Status: q.Get("status")})
			}
			writeJSON(w, http.StatusOK, page)
		case "/tasks/t1/devices":
			page := api.DeviceList{Items: []api.Device{}, Next: next}
			for i := from; i < to; i++ {
				page.Items = append(page.Items, api.Device{ID: fmt.Sprintf("d%d", i), Status: q.Get("status")})
			}
			writeJSON(w, http.StatusOK, page)
		default:
			http.NotFound(w, r)
		}
	})
}

func TestListIteratesEveryPage(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	c, _ := newTestClient(t, pagedServer(t, 5, &requests))
	var ids []string
	for task, err := range c.List(t.Context(), ListOptions{Status: api.StatusRunning, PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if task.Status != api.StatusRunning {
			t.Errorf("task %s has status %q: the filter was lost on a later page", task.ID, task.Status)
		}
		ids = append(ids, task.ID)
	}
	if want := []string{"t0", "t1", "t2", "t3", "t4"}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3 pages", n)
	}
}

func TestListStopsFetchingWhenTheLoopBreaks(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	c, _ := newTestClient(t, pagedServer(t, 10, &requests))
	n := 0
	for _, err := range c.List(t.Context(), ListOptions{PageSize: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 4 {
			break
		}
	}
	if got := requests.Load(); got != 2 {
		t.Errorf("server saw %d requests for 4 tasks in pages of 3, want 2", got)
	}
}

func TestDevicesIteratesWithStatusFilter(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	c, _ := newTestClient(t, pagedServer(t, 3, &requests))
	var ids []string
	for d, err := range c.Devices(t.Context(), "t1", DeviceOptions{Statuses: []string{api.DeviceFailed, api.DeviceTimedOut}, PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != "failed,timed_out" {
			t.Errorf("device %s saw status filter %q, want failed,timed_out", d.ID, d.Status)
		}
		ids = append(ids, d.ID)
	}
	if want := []string{"d0", "d1", "d2"}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
}

func TestIteratorsYieldErrorsOnce(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	c, _ := newTestClient(t, pagedServer(t, 3, &requests))
	var errs []error
	for _, err := range c.Devices(t.Context(), "missing", DeviceOptions{}) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !IsNotFound(errs[0]) {
		t.Errorf("errors = %v, want one not-found error", errs)
	}
}
