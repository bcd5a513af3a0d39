package localrun

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestPoolGrantsSlotsInTurn(t *testing.T) {
	t.Parallel()
	p := newPool(1)
	if !p.tryAcquire() {
		t.Fatal("the free slot was not granted")
	}
	if p.tryAcquire() {
		t.Fatal("a second slot was granted from a pool of one")
	}
	never := make(chan struct{})
	order := make(chan string, 2)
	waitInLine := func(name string) {
		queued := len(p.waiting)
		go func() {
			if p.acquire(never) {
				order <- name
			}
		}()
		waitFor(t, name+" to wait", 5*time.Second, func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.waiting) == queued+1
		})
	}
	waitInLine("first")
	waitInLine("second")
	p.release()
	if got := <-order; got != "first" {
		t.Fatalf("%s got the slot, want the first waiter", got)
	}
	// A slot is handed on, never freed, while someone waits: a newcomer cannot jump the line.
	if p.tryAcquire() {
		t.Fatal("tryAcquire took a slot while another waiter was in line")
	}
	p.release()
	if got := <-order; got != "second" {
		t.Fatalf("%s got the slot, want the second waiter", got)
	}
}

func TestPoolAcquireGivesUpWhenStopped(t *testing.T) {
	t.Parallel()
	p := newPool(1)
	p.tryAcquire()
	stop := make(chan struct{})
	got := make(chan bool)
	go func() { got <- p.acquire(stop) }()
	close(stop)
	if <-got {
		t.Fatal("acquire granted a slot that was never released")
	}
	p.release()
	if !p.tryAcquire() {
		t.Fatal("the released slot was lost to the stopped waiter")
	}
}

func TestMaxProcsIsSharedFairlyAcrossTasks(t *testing.T) {
	t.Parallel()
	long := []string{"a1", "a2", "a3", "a4", "a5", "a6"}
	short := []string{"b1", "b2"}
	store := newFakeStore()
	store.addTask("T1", long...)
	store.addTask("T2", short...)
	b := setupWith(t, store, Config{MaxProcs: 2})
	name := b.script(t, "brief.sh", `sleep 0.3`)
	t1 := newTask("T1", name, time.Now(), long...)
	t1.Request.MaxConcurrency = "100%"
	if err := b.runner.Start(context.Background(), t1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "T1 to wait for a slot", 10*time.Second, func() bool {
		return slices.Contains(store.stepsSeen(), "T1: waiting for a free slot: this server runs at most 2 scripts at once")
	})
	t2 := newTask("T2", name, time.Now(), short...)
	if err := b.runner.Start(context.Background(), t2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every device to finish", 30*time.Second, store.allTerminal)

	if n := store.peakRunning(); n > 2 {
		t.Errorf("%d scripts ran at once, want at most 2", n)
	}
	// T2 took turns with T1 instead of waiting for all of T1's devices.
	var started []string
	for _, u := range store.updates {
		if u.Status == task.DeviceRunning {
			started = append(started, u.DeviceID)
		}
	}
	last := slices.Index(started, "a6")
	for _, id := range short {
		if i := slices.Index(started, id); i < 0 || i > last {
			t.Errorf("%s started at %d, after T1's last device (order %v)", id, i, started)
		}
	}
	steps := store.stepsSeen()
	for _, want := range []string{"T2: waiting for a free slot: this server runs at most 2 scripts at once", "T1: ", "T2: "} {
		if !slices.Contains(steps, want) {
			t.Errorf("steps %q lack %q", steps, want)
		}
	}
}
