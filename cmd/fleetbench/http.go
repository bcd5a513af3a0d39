package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/loadgen"
)

// bench is one run: the server under test, its settings, and the rows measured so far.
type bench struct {
	o        options
	endpoint string
	script   string
	dir      string
	rows     []row
}

// row is one line of the closing table.
type row struct {
	what, mine, ceiling string
	ratio               float64
	goal                string
}

// print writes the closing table.
func (b *bench) print() {
	fmt.Printf("%-44s %-26s %-34s %7s   %s\n", "", "fleetrun", "ceiling", "ratio", "goal")
	for _, r := range b.rows {
		fmt.Printf("%-44s %-26s %-34s %6.2fx   %s\n", r.what, r.mine, r.ceiling, r.ratio, r.goal)
	}
}

// profile runs f, under a CPU profile written to name.pprof when --cpuprofile is set.
func (b *bench) profile(name string, f func()) {
	if b.o.profiles == "" {
		f()
		return
	}
	out, err := os.Create(filepath.Join(b.o.profiles, name+".pprof"))
	if err == nil && pprof.StartCPUProfile(out) == nil {
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	f()
}

// submitBody is the i-th submit: one device running the no-op script.
func submitBody(i int) []byte {
	b, _ := json.Marshal(api.SubmitRequest{DeviceIDs: []string{fmt.Sprintf("bench-%d", i)}, ScriptURL: "noop.sh"})
	return b
}

func post(ctx context.Context, url string, i int) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(submitBody(i)))
	if err == nil {
		req.Header.Set("Content-Type", api.MediaJSON)
	}
	return req, err
}

// submits is the durable POST /tasks row: postClients clients submit for the duration, then
// the benchmark waits for every submitted task to have run.
func (b *bench) submits(ctx context.Context) error {
	client := newClient(b.o.postClients)
	var mine loadgen.Figures
	b.profile("post", func() {
		mine = loadgen.Run(ctx, "fleetrun POST /tasks", client, b.o.postClients, b.o.duration, http.StatusAccepted,
			func(ctx context.Context, i int) (*http.Request, error) { return post(ctx, b.endpoint+"/tasks", i) })
	})
	fmt.Println(mine)
	start := time.Now()
	var err error
	b.profile("drain", func() { err = b.drain(ctx, client) })
	if err != nil {
		return err
	}
	fmt.Printf("  the %d submitted tasks had all run %s after the burst\n", mine.Requests-mine.Errors, time.Since(start).Round(time.Millisecond))
	bare := bareServer(nil)
	defer bare.Close()
	ceiling := loadgen.Run(ctx, "bare net/http POST", client, b.o.postClients, b.o.duration, http.StatusAccepted,
		func(ctx context.Context, i int) (*http.Request, error) { return post(ctx, bare.URL+"/tasks", i) })
	fmt.Println(ceiling)
	b.rows = append(b.rows, row{what: fmt.Sprintf("durable POST /tasks, %d clients", b.o.postClients),
		mine: rate(mine), ceiling: "bare net/http " + rate(ceiling), ratio: mine.PerSecond() / ceiling.PerSecond(),
		goal: "≥ 5,000/s, p99 ≤ 15 ms"})
	return nil
}

// statuses is the status GET row, against a bare server answering the same bytes, and the
// status GETs' latency while a burst of submits runs.
func (b *bench) statuses(ctx context.Context) error {
	client := newClient(b.o.getClients + b.o.postClients)
	ids, err := b.taskIDs(ctx, client)
	if len(ids) == 0 && err == nil {
		// Run alone (--only get): read tasks of its own.
		loadgen.Run(ctx, "seed", client, 8, time.Second, http.StatusAccepted,
			func(ctx context.Context, i int) (*http.Request, error) { return post(ctx, b.endpoint+"/tasks", 2_000_000+i) })
		if err := b.drain(ctx, client); err != nil {
			return err
		}
		ids, err = b.taskIDs(ctx, client)
	}
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("no task to read")
	}
	body, err := fetch(ctx, client, b.endpoint+"/tasks/"+ids[0])
	if err != nil {
		return err
	}
	get := func(base string) loadgen.Request {
		return func(ctx context.Context, i int) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, base+"/tasks/"+ids[i%len(ids)], nil)
		}
	}
	var mine loadgen.Figures
	b.profile("get", func() {
		mine = loadgen.Run(ctx, "fleetrun GET /tasks/{id}", client, b.o.getClients, b.o.duration, http.StatusOK, get(b.endpoint))
	})
	fmt.Println(mine)
	bare := bareServer(body)
	defer bare.Close()
	ceiling := loadgen.Run(ctx, "bare net/http GET", client, b.o.getClients, b.o.duration, http.StatusOK, get(bare.URL))
	fmt.Println(ceiling)
	b.rows = append(b.rows, row{what: fmt.Sprintf("status GET /tasks/{id}, %d clients", b.o.getClients),
		mine: rate(mine), ceiling: "bare net/http " + rate(ceiling), ratio: mine.PerSecond() / ceiling.PerSecond(), goal: "≥ 0.8x"})

	// A few clients reading status alone, then the same while postClients submit.
	const readers = 4
	alone := loadgen.Run(ctx, "GET alone, 4 clients", client, readers, b.o.duration, http.StatusOK, get(b.endpoint))
	fmt.Println(alone)
	var burst, during loadgen.Figures
	var wg sync.WaitGroup
	wg.Go(func() {
		burst = loadgen.Run(ctx, "POST burst", client, b.o.postClients, b.o.duration, http.StatusAccepted,
			func(ctx context.Context, i int) (*http.Request, error) { return post(ctx, b.endpoint+"/tasks", 1_000_000+i) })
	})
	b.profile("burst", func() {
		during = loadgen.Run(ctx, "GET during the burst", client, readers, b.o.duration, http.StatusOK, get(b.endpoint))
	})
	wg.Wait()
	fmt.Println(burst)
	fmt.Println(during)
	if err := b.drain(ctx, client); err != nil {
		return err
	}
	b.rows = append(b.rows, row{what: fmt.Sprintf("status GET p99 during %d submitters", b.o.postClients),
		mine: fmt.Sprintf("%s (%.0f/s)", during.P99.Round(10*time.Microsecond), during.PerSecond()),
		ceiling: fmt.Sprintf("the same GETs alone %s", alone.P99.Round(10*time.Microsecond)),
		ratio:   float64(during.P99) / float64(max(alone.P99, 1)), goal: "reads not starved"})
	return nil
}

// rate formats a run's throughput and p99.
func rate(f loadgen.Figures) string {
	return fmt.Sprintf("%.0f/s p99 %s", f.PerSecond(), f.P99.Round(10*time.Microsecond))
}

// bareServer is the ceiling: net/http answering every GET with body and every POST with a
// 202 and body (a task's JSON of the same size, when given).
func bareServer(body []byte) *httptest.Server {
	if body == nil {
		body, _ = json.Marshal(api.Task{ID: "01JBENCHBENCHBENCHBENCHBEN", Status: "pending"})
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", api.MediaJSON)
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
		}
		_, _ = w.Write(body)
	}))
}

// drain waits until no task is pending or running.
func (b *bench) drain(ctx context.Context, client *http.Client) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		busy := false
		for _, st := range []string{"pending", "running"} {
			var list api.TaskList
			if err := getJSON(ctx, client, b.endpoint+"/tasks?limit=1&status="+st, &list); err != nil {
				return err
			}
			busy = busy || len(list.Items) > 0
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("tasks still unfinished after 5 minutes")
}

// taskIDs lists up to 10,000 task ids, newest first.
func (b *bench) taskIDs(ctx context.Context, client *http.Client) ([]string, error) {
	var ids []string
	for page := b.endpoint + "/tasks?limit=1000"; page != "" && len(ids) < 10000; {
		var list api.TaskList
		if err := getJSON(ctx, client, page, &list); err != nil {
			return nil, err
		}
		for _, t := range list.Items {
			ids = append(ids, t.ID)
		}
		page = list.Next
	}
	return ids, nil
}

func newClient(workers int) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2}}
}

func fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	b, err := fetch(ctx, client, url)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
