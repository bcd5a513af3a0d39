package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

// fleet is the device row: one task of o.devices devices running the no-op script,
// o.concurrency at a time, from the submit to the task's completion as a long-poll sees it,
// against xargs running the same script as many times with as many at once.
func (b *bench) fleet(ctx context.Context) error {
	start := time.Now()
	cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("seq %d | xargs -P %d -n 1 %s", b.o.devices, b.o.concurrency, b.script))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("xargs: %v: %s", err, out)
	}
	ceiling := time.Since(start)
	fmt.Printf("%-28s %9s\n", fmt.Sprintf("xargs -P %d, %d runs", b.o.concurrency, b.o.devices), ceiling.Round(time.Millisecond))

	var took time.Duration
	var final api.Task
	var err error
	b.profile("devices", func() { took, final, err = b.runTask(ctx) })
	if err != nil {
		return err
	}
	fmt.Printf("%-28s %9s   (%s, %d succeeded)\n", fmt.Sprintf("fleetrun, %d devices", b.o.devices), took.Round(time.Millisecond),
		final.Status, final.Progress.Devices.Succeeded)
	if final.Status != "completed" || final.Progress.Devices.Succeeded != b.o.devices {
		return fmt.Errorf("the task ended %s with %+v", final.Status, final.Progress.Devices)
	}
	b.rows = append(b.rows, row{what: fmt.Sprintf("%d no-op devices, %d at a time", b.o.devices, b.o.concurrency),
		mine: took.Round(time.Millisecond).String(), ceiling: fmt.Sprintf("xargs -P %d %s", b.o.concurrency, ceiling.Round(time.Millisecond)),
		ratio: took.Seconds() / ceiling.Seconds(), goal: "≤ 1.15x"})
	return nil
}

// runTask submits the task and long-polls it until it ends.
func (b *bench) runTask(ctx context.Context) (time.Duration, api.Task, error) {
	ids := make([]string, b.o.devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%05d", i)
	}
	body, _ := json.Marshal(api.SubmitRequest{DeviceIDs: ids, ScriptURL: "noop.sh", MaxConcurrency: fmt.Sprint(b.o.concurrency)})
	client := newClient(1)
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.endpoint+"/tasks", bytes.NewReader(body))
	req.Header.Set("Content-Type", api.MediaJSON)
	resp, err := client.Do(req)
	if err != nil {
		return 0, api.Task{}, err
	}
	var t api.Task
	err = json.NewDecoder(resp.Body).Decode(&t)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted {
		return 0, api.Task{}, fmt.Errorf("submit: %s: %v", resp.Status, err)
	}
	for !terminal(t.Status) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.endpoint+"/tasks/"+t.ID, nil)
		req.Header.Set("Prefer", "wait=20")
		req.Header.Set("If-None-Match", fmt.Sprintf(`"%d"`, t.Version))
		resp, err := client.Do(req)
		if err != nil {
			return 0, api.Task{}, err
		}
		if resp.StatusCode == http.StatusOK {
			err = json.NewDecoder(resp.Body).Decode(&t)
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		resp.Body.Close()
		if err != nil {
			return 0, api.Task{}, err
		}
	}
	return time.Since(start), t, nil
}

func terminal(status string) bool {
	switch status {
	case "completed", "failed", "timed_out", "cancelled":
		return true
	}
	return false
}
