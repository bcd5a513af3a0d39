package client

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

// scriptedTask serves GET /tasks/t1 from a list of versions, moving to the next version each
// time a poll finds the client up to date and the step function allows it.
type scriptedTask struct {
	t        *testing.T
	mu       sync.Mutex
	versions []api.Task
	current  int
	// onUnchanged is called for a poll whose If-None-Match matches the current version; it
	// returns true to advance to the next version and answer with it.
	onUnchanged func(r *http.Request) bool
	// drop lists request numbers (from 1) whose connection is closed without an answer.
	drop    []int
	seen    int
	prefers []string
	// preferenceApplied makes the server say Preference-Applied when asked to wait.
	preferenceApplied bool
}

func (s *scriptedTask) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if slices.Contains(s.drop, s.seen) {
		drop(s.t, w)
		return
	}
	s.prefers = append(s.prefers, r.Header.Get("Prefer"))
	if p := r.Header.Get("Prefer"); s.preferenceApplied && p != "" {
		w.Header().Set("Preference-Applied", p)
	}
	cur := s.versions[s.current]
	etag := strconv.Quote(strconv.FormatInt(cur.Version, 10))
	if inm := r.Header.Get("If-None-Match"); inm == etag {
		if !s.onUnchanged(r) || s.current == len(s.versions)-1 {
			w.Header().Set("ETag", etag)
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		s.current++
		cur = s.versions[s.current]
		etag = strconv.Quote(strconv.FormatInt(cur.Version, 10))
	}
	w.Header().Set("ETag", etag)
	if !api.Terminal(cur.Status) {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, http.StatusOK, cur)
}

func threeVersions() []api.Task {
	return []api.Task{
		taskAt("t1", api.StatusRunning, 1, 1, 3),
		taskAt("t1", api.StatusRunning, 2, 2, 3),
		taskAt("t1", api.StatusCompleted, 3, 3, 3),
	}
}

func waitVersions(t *testing.T, c *Client) []int64 {
	t.Helper()
	var seen []int64
	got, err := c.Wait(t.Context(), "t1", func(task *api.Task) { seen = append(seen, task.Version) })
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got.Status != api.StatusCompleted || got.Version != 3 {
		t.Errorf("Wait returned %s v%d, want completed v3", got.Status, got.Version)
	}
	return seen
}

func TestWaitLongPollsWithoutPausing(t *testing.T) {
	t.Parallel()
	var clock *clocktest.Clock
	held := false
	s := &scriptedTask{t: t, versions: threeVersions(), onUnchanged: func(r *http.Request) bool {
		// The first poll of each version times out after the server held it; the next sees a change.
		if !held {
			held = true
			clock.Advance(20 * time.Second)
			return false
		}
		held = false
		return true
	}}
	c, fc := newTestClient(t, s)
	clock = fc
	if seen := waitVersions(t, c); !slices.Equal(seen, []int64{1, 2, 3}) {
		t.Errorf("progress saw versions %v, want [1 2 3]", seen)
	}
	if s := clock.Slept(); len(s) != 0 {
		t.Errorf("Wait paused %v between long-polls, want no pause", s)
	}
	if s.prefers[0] != "" || slices.ContainsFunc(s.prefers[1:], func(p string) bool { return p != "wait=20" }) {
		t.Errorf("Prefer headers = %q, want none on the first read and wait=20 after", s.prefers)
	}
}

func TestWaitTrustsPreferenceApplied(t *testing.T) {
	t.Parallel()
	held := false
	s := &scriptedTask{t: t, versions: threeVersions(), preferenceApplied: true, onUnchanged: func(r *http.Request) bool {
		held = !held
		return !held // time does not pass, but the server says it held the poll
	}}
	c, clock := newTestClient(t, s)
	if seen := waitVersions(t, c); !slices.Equal(seen, []int64{1, 2, 3}) {
		t.Errorf("progress saw versions %v, want [1 2 3]", seen)
	}
	if s := clock.Slept(); len(s) != 0 {
		t.Errorf("Wait paused %v, want no pause after a poll the server held", s)
	}
}

func TestWaitPausesWhenTheServerDoesNotHoldPolls(t *testing.T) {
	t.Parallel()
	polls := 0
	s := &scriptedTask{t: t, versions: threeVersions(), onUnchanged: func(r *http.Request) bool {
		polls++
		return polls%2 == 0 // every other poll comes back unchanged at once
	}}
	c, clock := newTestClient(t, s)
	if seen := waitVersions(t, c); !slices.Equal(seen, []int64{1, 2, 3}) {
		t.Errorf("progress saw versions %v, want [1 2 3]", seen)
	}
	if s := clock.Slept(); !slices.Equal(s, []time.Duration{5 * time.Second, 5 * time.Second}) {
		t.Errorf("pauses = %v, want the Retry-After of 5s after each unchanged answer", s)
	}
}

func TestWaitPollsPlainlyWithoutLongPoll(t *testing.T) {
	t.Parallel()
	s := &scriptedTask{t: t, versions: threeVersions(), onUnchanged: func(r *http.Request) bool { return true }}
	c, clock := newTestClient(t, s, WithLongPoll(0))
	if seen := waitVersions(t, c); !slices.Equal(seen, []int64{1, 2, 3}) {
		t.Errorf("progress saw versions %v, want [1 2 3]", seen)
	}
	if slices.ContainsFunc(s.prefers, func(p string) bool { return p != "" }) {
		t.Errorf("Prefer headers = %q, want none", s.prefers)
	}
	if s := clock.Slept(); !slices.Equal(s, []time.Duration{5 * time.Second, 5 * time.Second}) {
		t.Errorf("pauses = %v, want Retry-After between plain polls", s)
	}
}

func TestWaitSurvivesDroppedConnections(t *testing.T) {
	t.Parallel()
	s := &scriptedTask{t: t, versions: threeVersions(), onUnchanged: func(r *http.Request) bool { return true },
		drop: []int{2, 3, 5}}
	c, _ := newTestClient(t, s)
	if seen := waitVersions(t, c); !slices.Equal(seen, []int64{1, 2, 3}) {
		t.Errorf("progress saw versions %v, want [1 2 3]", seen)
	}
	if s.seen != 6 {
		t.Errorf("server saw %d requests, want 6 (3 answered polls and 3 dropped)", s.seen)
	}
}

func TestWaitReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	s := &scriptedTask{t: t, versions: threeVersions(), onUnchanged: func(r *http.Request) bool { return false }}
	c, _ := newTestClient(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	c.sleep = func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}
	var seen []int64
	_, err := c.Wait(ctx, "t1", func(task *api.Task) { seen = append(seen, task.Version) })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Wait error = %v, want context.Canceled", err)
	}
	if !slices.Equal(seen, []int64{1}) {
		t.Errorf("progress saw %v, want [1]", seen)
	}
}
