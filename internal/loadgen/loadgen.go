// Package loadgen drives an HTTP server over loopback with a fixed number of concurrent
// workers for a fixed time, and reports throughput and latency percentiles. It measures; it
// asserts nothing.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Request builds the i-th request of a run.
type Request func(ctx context.Context, i int) (*http.Request, error)

// Figures are the results of one run.
type Figures struct {
	Name     string
	Requests int
	Errors   int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// PerSecond is the rate of successful requests.
func (f Figures) PerSecond() float64 {
	if f.Elapsed <= 0 {
		return 0
	}
	return float64(f.Requests-f.Errors) / f.Elapsed.Seconds()
}

// String formats the figures as one row of a table.
func (f Figures) String() string {
	return fmt.Sprintf("%-28s %9.0f/s   p50 %8s   p99 %8s   (%d requests, %d errors)",
		f.Name, f.PerSecond(), f.P50.Round(time.Microsecond), f.P99.Round(time.Microsecond), f.Requests, f.Errors)
}

// Run sends requests from workers goroutines for d and measures them. A response whose status
// is not want counts as an error.
func Run(ctx context.Context, name string, client *http.Client, workers int, d time.Duration, want int, build Request) Figures {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		next      int
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				req, err := build(ctx, i)
				if err != nil {
					return
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				ok := err == nil && resp.StatusCode == want
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(t0)
				if ctx.Err() != nil && !ok {
					return // cut off by the end of the run, not a failure
				}
				mu.Lock()
				latencies = append(latencies, lat)
				if !ok {
					errs++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	f := Figures{Name: name, Requests: len(latencies), Errors: errs, Elapsed: time.Since(start)}
	slices.Sort(latencies)
	f.P50 = percentile(latencies, 0.50)
	f.P99 = percentile(latencies, 0.99)
	return f
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}
