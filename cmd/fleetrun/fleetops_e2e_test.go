package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
)

// TestCancelThreeOfTwentyDevices cancels 3 devices of a 20-device task while the rest run:
// each DELETE answers 202, exactly those 3 end cancelled and their processes are gone, and the
// other 17 run on and succeed, the task ending completed with the counts adding up.
func TestCancelThreeOfTwentyDevices(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	// Each device records its pid and its child's, then waits for the gate to open.
	writeScript(t, root, "gated.sh", "#!/bin/sh\necho $$ > \"$PIDS/$FLEETRUN_DEVICE_ID.pid\"\nsleep 300 &\n"+
		"echo $! > \"$PIDS/$FLEETRUN_DEVICE_ID.child\"\nwhile [ ! -e \"$PIDS/open\" ]; do sleep 0.05; done\nkill $!\necho done\n")
	s := startServer(t, t.TempDir(), root)
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("dev-%02d", i))
	}
	tk := s.submit(api.SubmitRequest{DeviceIDs: ids, ScriptURL: "gated.sh"})
	s.waitFor(tk.ID, "running on all 20", func(t api.Task) bool { return t.Progress.Devices.Running == 20 })

	victims := []string{ids[3], ids[11], ids[17]}
	var pids []int
	for _, id := range victims {
		pids = append(pids, readPids(t, s.pids, id+".pid", id+".child")...)
		r := s.do(http.MethodDelete, "/tasks/"+tk.ID+"/devices/"+id, nil)
		var d api.Device
		r.decode(t, &d)
		if r.status != http.StatusAccepted || d.Status != api.DeviceRunning || d.CancelRequestedAt == nil || r.header.Get("Location") == "" {
			t.Fatalf("DELETE of running device %s: %d %s", id, r.status, r.body)
		}
	}
	s.waitFor(tk.ID, "the 3 cancelled", func(t api.Task) bool { return t.Progress.Devices.Cancelled == 3 })
	for _, pid := range pids {
		clocktest.Eventually(t, 10*time.Second, func() error {
			if alive(pid) {
				return fmt.Errorf("process %d of a cancelled device is alive", pid)
			}
			return nil
		})
	}
	if running := s.get(tk.ID); running.Status != api.StatusRunning || running.Progress.Devices.Running != 17 {
		t.Fatalf("with 3 devices cancelled the task is %s with %+v; want running with 17", running.Status, running.Progress.Devices)
	}
	if err := os.WriteFile(filepath.Join(s.pids, "open"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := s.waitFor(tk.ID, "finished", func(t api.Task) bool { return api.Terminal(t.Status) })
	want := api.DeviceCounts{Total: 20, Succeeded: 17, Cancelled: 3}
	if done.Status != api.StatusCompleted || done.Progress.Devices != want || done.Progress.Percentage != 100 {
		t.Fatalf("final: %s %+v; want completed %+v", done.Status, done.Progress.Devices, want)
	}
	if !slices.Equal(done.Result.CancelledDevices, victims) || len(done.Result.SucceededDevices) != 17 {
		t.Errorf("result: %+v", done.Result)
	}
	var list api.DeviceList
	s.do(http.MethodGet, "/tasks/"+tk.ID+"/devices?status=cancelled", nil).decode(t, &list)
	for _, d := range list.Items {
		if !slices.Contains(victims, d.ID) || d.CancelRequestedAt == nil || !strings.Contains(d.Reason, "cancelled") {
			t.Errorf("cancelled device %+v", d)
		}
	}
	// Cancelling a cancelled device again answers 200; a succeeded one 409 with its status.
	if r := s.do(http.MethodDelete, "/tasks/"+tk.ID+"/devices/"+victims[0], nil); r.status != http.StatusConflict {
		t.Errorf("DELETE of a device of a completed task: %d %s", r.status, r.body)
	}
}

// TestRelaunchFailedRunsExactlyTheFailedDevices runs flaky.sh (which fails on d2), relaunches
// "failed", and checks that the new task runs on d2 alone, names its original, is listed by the
// original's relaunches link, and that the same Idempotency-Key returns it again.
func TestRelaunchFailedRunsExactlyTheFailedDevices(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), scriptRoot(t))
	orig := s.submit(api.SubmitRequest{DeviceIDs: []string{"d1", "d2", "d3", "d4"}, ScriptURL: "flaky.sh"})
	s.waitStatus(orig.ID, api.StatusCompleted)

	body := `{"devices":"failed","timeoutSeconds":120}`
	r := s.do(http.MethodPost, "/tasks/"+orig.ID+"/relaunch", body, "Idempotency-Key", "relaunch-flaky")
	var again api.Task
	r.decode(t, &again)
	if r.status != http.StatusAccepted || again.RelaunchOf == nil || again.RelaunchOf.ID != orig.ID ||
		again.Request.DeviceCount != 1 || again.Request.TimeoutSeconds != 120 || r.header.Get("Location") != again.Links.Self {
		t.Fatalf("relaunch: %d %s", r.status, r.body)
	}
	r = s.do(http.MethodPost, "/tasks/"+orig.ID+"/relaunch", body, "Idempotency-Key", "relaunch-flaky")
	var replay api.Task
	if r.decode(t, &replay); r.status != http.StatusAccepted || replay.ID != again.ID || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: %d %s, want %s again", r.status, replay.ID, again.ID)
	}
	done := s.waitFor(again.ID, "finished", func(t api.Task) bool { return api.Terminal(t.Status) })
	if done.Progress.Devices.Total != 1 || !slices.Equal(done.Result.FailedDevices, []string{"d2"}) {
		t.Errorf("the relaunch ran %+v with result %+v; want d2 alone, failing again", done.Progress.Devices, done.Result)
	}
	var devices api.DeviceList
	s.do(http.MethodGet, "/tasks/"+again.ID+"/devices", nil).decode(t, &devices)
	if len(devices.Items) != 1 || devices.Items[0].ID != "d2" {
		t.Errorf("the relaunch's devices: %+v", devices.Items)
	}
	original := s.get(orig.ID)
	var list api.TaskList
	r = s.do(http.MethodGet, strings.TrimPrefix(original.Links.Relaunches, s.url), nil)
	if r.decode(t, &list); len(list.Items) != 1 || list.Items[0].ID != again.ID {
		t.Errorf("relaunches of the original: %s", r.body)
	}
}

// TestFollowDeliversLinesWhileTheScriptRuns follows a script that prints a line every 200 ms for
// 2 s: the stream delivers the first line while the device still runs, every line in order,
// and closes once the device has ended; meanwhile the running device's inline stdout is not
// empty.
func TestFollowDeliversLinesWhileTheScriptRuns(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	writeScript(t, root, "ticker.sh", "#!/bin/sh\ni=1\nwhile [ $i -le 10 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.2; done\n")
	s := startServer(t, t.TempDir(), root)
	tk := s.submit(api.SubmitRequest{DeviceIDs: []string{"web-1"}, ScriptURL: "ticker.sh"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/tasks/"+tk.ID+"/devices/web-1/output?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	lines := bufio.NewReader(resp.Body)
	first, err := lines.ReadString('\n')
	if err != nil || first != "line 1\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	var d api.Device
	s.do(http.MethodGet, "/tasks/"+tk.ID+"/devices/web-1", nil).decode(t, &d)
	if d.Status != api.DeviceRunning {
		t.Fatalf("the device is %s when the first line arrived; want it still running", d.Status)
	}
	// The running device's inline copy follows what it writes too.
	clocktest.Eventually(t, 10*time.Second, func() error {
		var d api.Device
		s.do(http.MethodGet, "/tasks/"+tk.ID+"/devices/web-1", nil).decode(t, &d)
		switch {
		case d.Status == api.DeviceRunning && strings.HasPrefix(d.Stdout, "line 1\n"):
			return nil
		case d.Status != api.DeviceRunning:
			t.Fatalf("the device ended (%s) before its inline stdout showed anything while it ran", d.Status)
		}
		return fmt.Errorf("the running device's inline stdout is %q", d.Stdout)
	})
	rest, err := io.ReadAll(lines)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 2; i <= 10; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if string(rest) != want.String() {
		t.Errorf("the rest of the stream = %q, want %q", rest, want.String())
	}
	// The stream closed at the end: the device has ended by now.
	s.do(http.MethodGet, "/tasks/"+tk.ID+"/devices/web-1", nil).decode(t, &d)
	if d.Status != api.DeviceSucceeded {
		t.Errorf("the stream closed with the device %s", d.Status)
	}
}

// TestTargetsPickTheRightDevices submits with tag targets against an inventory of 6 devices in
// 2 tags: the AND/OR rule picks exactly the right ones; no match and more than 10,000 matches
// are 422s that store nothing; SIGHUP reloads the inventory file.
func TestTargetsPickTheRightDevices(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inventory := filepath.Join(dir, "devices.yaml")
	if err := os.WriteFile(inventory, []byte(`devices:
  - {id: web-1, tags: {Env: prod, Role: web}}
  - {id: web-2, tags: {Env: staging, Role: web}}
  - {id: db-1, tags: {Env: prod, Role: db}}
  - {id: db-2, tags: {Env: staging, Role: db}}
  - {id: cache-1, tags: {Env: prod, Role: cache}}
  - {id: edge-1, tags: {Role: web}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	var b strings.Builder
	b.WriteString("devices:\n")
	for i := range 10001 {
		fmt.Fprintf(&b, "  - {id: n-%05d, tags: {Fleet: huge}}\n", i)
	}
	if err := os.WriteFile(huge, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), scriptRoot(t), "--inventory", inventory)

	cases := []struct {
		targets string
		want    []string
	}{
		{`[{"key":"tag:Env","values":["prod"]},{"key":"tag:Role","values":["web","db"]}]`, []string{"web-1", "db-1"}},
		{`[{"key":"tag:Role","values":["web","db"]}]`, []string{"web-1", "web-2", "db-1", "db-2", "edge-1"}},
		{`[{"key":"tag:Env","values":["staging","prod"]},{"key":"tag:Role","values":["web"]}]`, []string{"web-1", "web-2"}},
	}
	for _, c := range cases {
		r := s.do(http.MethodPost, "/tasks", `{"targets":`+c.targets+`,"scriptUrl":"ok.sh"}`)
		var tk api.Task
		r.decode(t, &tk)
		if r.status != http.StatusAccepted || tk.Request.DeviceCount != len(c.want) || len(tk.Request.Targets) == 0 {
			t.Fatalf("submit %s: %d %s", c.targets, r.status, r.body)
		}
		var devices api.DeviceList
		s.do(http.MethodGet, "/tasks/"+tk.ID+"/devices", nil).decode(t, &devices)
		var got []string
		for _, d := range devices.Items {
			got = append(got, d.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("targets %s picked %v, want %v", c.targets, got, c.want)
		}
	}

	var before api.TaskList
	s.do(http.MethodGet, "/tasks?limit=100", nil).decode(t, &before)
	r := s.do(http.MethodPost, "/tasks", `{"targets":[{"key":"tag:Env","values":["dev"]}],"scriptUrl":"ok.sh"}`)
	var p api.Problem
	if r.decode(t, &p); r.status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Pointer != "/targets" {
		t.Errorf("no match: %d %s", r.status, r.body)
	}

	// SIGHUP reloads the file: now it holds 10,001 matching devices, more than a task may have.
	if err := os.Rename(huge, inventory); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	clocktest.Eventually(t, 10*time.Second, func() error {
		var inv api.InventoryList
		r := s.do(http.MethodGet, "/devices?tag:Fleet=huge&limit=1", nil)
		if r.decode(t, &inv); len(inv.Items) != 1 {
			return fmt.Errorf("after SIGHUP the inventory answers %d %s", r.status, r.body)
		}
		return nil
	})
	r = s.do(http.MethodPost, "/tasks", `{"targets":[{"key":"tag:Fleet","values":["huge"]}],"scriptUrl":"ok.sh"}`)
	if r.decode(t, &p); r.status != http.StatusUnprocessableEntity || !strings.Contains(p.Detail, "more than 10000") {
		t.Errorf("too many matches: %d %s", r.status, r.body)
	}
	var after api.TaskList
	s.do(http.MethodGet, "/tasks?limit=100", nil).decode(t, &after)
	if len(after.Items) != len(before.Items) {
		t.Errorf("refused submits stored tasks: %d before, %d after", len(before.Items), len(after.Items))
	}
}
