package httpapi

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestFollowStreamsOutputAsItIsWritten follows a running device's output: each line arrives
// while the device still runs, and the stream closes once the device has ended.
func TestFollowStreamsOutputAsItIsWritten(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{following: true})
	tk := b.submit("web-1")
	b.deliver()
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceRunning})
	b.output.put(tk.ID, "web-1", "stdout", "line 1\n")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hr := b.newRequest(ctx, req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true", token: aliceToken})
	res, err := b.srv.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("follow: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	lines := bufio.NewReader(res.Body)
	if line, err := lines.ReadString('\n'); err != nil || line != "line 1\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	if d := b.device(tk.ID, "web-1"); d.Status != task.DeviceRunning {
		t.Fatalf("the device is %s when the first line arrived, want running", d.Status)
	}
	b.output.appendOutput(tk.ID, "web-1", "stdout", "line 2\n")
	if line, err := lines.ReadString('\n'); err != nil || line != "line 2\n" {
		t.Fatalf("second line = %q, %v", line, err)
	}
	b.output.appendOutput(tk.ID, "web-1", "stdout", "last line\n")
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)})
	rest, err := io.ReadAll(lines)
	if err != nil || string(rest) != "last line\n" {
		t.Fatalf("the rest = %q, %v; want the last line, then the end of the stream", rest, err)
	}
}

// TestFollowWaitsForADeviceThatHasNotStarted follows a pending device, whose output does not
// exist yet, and a device that ends without ever running.
func TestFollowWaitsForADeviceThatHasNotStarted(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{following: true})
	tk := b.submit("web-1", "web-2")
	b.deliver()
	done := make(chan resp, 1)
	go func() {
		done <- b.do(req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true", token: aliceToken})
	}()
	b.output.put(tk.ID, "web-1", "stdout", "hello\n")
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)})
	if r := <-done; r.StatusCode != 200 || string(r.body) != "hello\n" {
		t.Errorf("follow of a device that started later: %d %q", r.StatusCode, r.body)
	}
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-2", Status: task.DeviceCancelled})
	if r := b.do(req{method: "GET", path: tk.Links.Devices + "/web-2/output?follow=true", token: aliceToken}); r.StatusCode != 200 || len(r.body) != 0 {
		t.Errorf("follow of a device that never ran: %d %q", r.StatusCode, r.body)
	}
	if r := b.do(req{method: "GET", path: tk.Links.Devices + "/web-2/output?follow=maybe", token: aliceToken}); r.StatusCode != 400 {
		t.Errorf("follow=maybe: %d %s", r.StatusCode, r.body)
	}
}

// TestFollowWithoutAFollowerAnswersOnceTheDeviceEnds follows where the output cannot be read
// while it is written (on AWS without CloudWatch output): the answer is the whole output once
// the device has ended, or a 409 with Retry-After when the wait (FollowWait) or the request's
// time is up first.
func TestFollowWithoutAFollowerAnswersOnceTheDeviceEnds(t *testing.T) {
	t.Parallel()
	deadline := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	b := setup(t, bundleOptions{wrap: deadline})
	tk := b.submit("web-1", "web-2")
	b.deliver()
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceRunning})
	r := b.do(req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true", token: aliceToken})
	p := decode[api.Problem](t, r)
	if r.StatusCode != http.StatusConflict || p.DeviceStatus != api.DeviceRunning || r.Header.Get("Retry-After") == "" {
		t.Fatalf("follow of a device still running when the time is up: %d %s", r.StatusCode, r.body)
	}
	done := make(chan resp, 1)
	go func() {
		done <- b.do(req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true", token: aliceToken})
	}()
	b.output.put(tk.ID, "web-1", "stdout", "all of it\n")
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0), Stdout: "all"})
	if r := <-done; r.StatusCode != 200 || string(r.body) != "all of it\n" {
		t.Errorf("follow answered at the end: %d %q", r.StatusCode, r.body)
	}

	// FollowWait ends the wait within a request that has time left.
	wb := setup(t, bundleOptions{followWait: 100 * time.Millisecond})
	tk = wb.submit("web-1")
	wb.deliver()
	wb.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceRunning})
	if r := wb.do(req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true", token: aliceToken}); r.StatusCode != http.StatusConflict {
		t.Errorf("follow past FollowWait: %d %s, want 409", r.StatusCode, r.body)
	}

	// Without an output store, the answer is the device's inline copy.
	nb := setup(t, bundleOptions{noOutput: true})
	tk = nb.submit("web-1")
	nb.deliver()
	nb.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceFailed, ExitCode: new(2), Stderr: "broken\n"})
	if r := nb.do(req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true&stream=stderr", token: aliceToken}); r.StatusCode != 200 || string(r.body) != "broken\n" {
		t.Errorf("follow without an output store: %d %q", r.StatusCode, r.body)
	}
}

// device reads a device from the store.
func (b *testBundle) device(taskID, id string) *task.Device {
	b.t.Helper()
	d, err := b.store.GetDevice(context.Background(), taskID, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return d
}

// TestFollowFromAnOffset follows again from where a caller was (offset): a stream skips the
// bytes the caller has, even as they are still being written, and so does a whole answer.
func TestFollowFromAnOffset(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOptions{following: true})
	tk := b.submit("web-1")
	b.deliver()
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceRunning})
	b.output.put(tk.ID, "web-1", "stdout", "hel")
	done := make(chan resp, 1)
	go func() {
		done <- b.do(req{method: "GET", path: tk.Links.Devices + "/web-1/output?follow=true&offset=6", token: aliceToken})
	}()
	b.output.appendOutput(tk.ID, "web-1", "stdout", "lo world\n")
	b.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0)})
	if r := <-done; r.StatusCode != 200 || string(r.body) != "world\n" {
		t.Errorf("a stream from offset 6: %d %q", r.StatusCode, r.body)
	}

	nb := setup(t, bundleOptions{noOutput: true})
	tk = nb.submit("web-1")
	nb.deliver()
	nb.report(tk.ID, task.DeviceUpdate{DeviceID: "web-1", Status: task.DeviceSucceeded, ExitCode: new(0), Stdout: "hello world\n"})
	path := tk.Links.Devices + "/web-1/output"
	if r := nb.do(req{method: "GET", path: path + "?follow=true&offset=6", token: aliceToken}); r.StatusCode != 200 || string(r.body) != "world\n" {
		t.Errorf("a whole answer from offset 6: %d %q", r.StatusCode, r.body)
	}
	for _, q := range []string{"?offset=6", "?follow=true&offset=-1", "?follow=true&offset=x"} {
		if r := nb.do(req{method: "GET", path: path + q, token: aliceToken}); r.StatusCode != 400 {
			t.Errorf("%s: %d %s, want 400", q, r.StatusCode, r.body)
		}
	}
}
