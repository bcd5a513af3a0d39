package lambdatest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
)

// The devices of the full-output task: one writes a lot, the other keeps the task running.
var (
	loudDevice = "i-0ccccccccccccccc1"
	busyDevice = "i-0ccccccccccccccc2"
)

// text returns n bytes of numbered lines, so that a byte out of place shows.
func text(prefix string, n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %06d: the quick brown fox jumps over the lazy dog\n", prefix, i)
	}
	return b.String()[:n]
}

// fullOutput runs a task whose device writes 100,000 characters to stdout and 20,000 to stderr
// through the functions, with SSM writing the output to the stack's output bucket on moto as
// the agent does: the executor's poll records SSM's 2,500-character copy, flagged truncated;
// SSM's event then makes the progress function read GetCommandInvocation's 24,000 and 8,000
// characters, which supersede it; the status function's device links its output, and the
// output function's /output route serves every byte of both streams from the bucket.
func fullOutput(t *testing.T, fns map[string]*lambdatest.Emulator, q *queue, srv *ssmtest.Server, sdk aws.Config) {
	t.Helper()
	submitFn, statusFn, executorFn, progressFn := fns["SubmitFunction"], fns["StatusFunction"], fns["ExecutorFunction"], fns["ProgressFunction"]
	outputFn := fns["OutputFunction"]
	objects := s3.NewFromConfig(sdk)
	srv.SetOutputWriter(func(ctx context.Context, bucket, key string, body []byte) error {
		_, err := objects.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
		return err
	})
	stdout, stderr := text("out", 100000), text("err", 20000)
	srv.Script(loudDevice, ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: stdout, Stderr: stderr})
	srv.Script(busyDevice, ssmtest.Script{Outcome: ssmtest.Never})

	sub := apiEvent(t, "submit.json")
	sub.Body = strings.Replace(sub.Body, `"deviceIds":["i-0123456789abcdef0","i-0fedcba9876543210","mi-0123456789abcdef0"]`,
		`"deviceIds":["`+loudDevice+`","`+busyDevice+`"]`, 1)
	setHeader(&sub, "Idempotency-Key", "full-output")
	var tk api.Task
	if resp := call(t, submitFn, sub, &tk); resp.StatusCode != 202 || tk.Request.DeviceCount != 2 {
		t.Fatalf("submit: %d %s", resp.StatusCode, resp.Body)
	}
	if failed := execute(t, executorFn, q.next(t, tk.ID, engine.ActionDispatch, 5*time.Second)); len(failed) > 0 {
		t.Fatalf("dispatch failed: %v", failed)
	}
	if failed := execute(t, executorFn, q.next(t, tk.ID, engine.ActionPoll, 30*time.Second)); len(failed) > 0 {
		t.Fatalf("poll failed: %v", failed)
	}

	device := func() api.Device {
		t.Helper()
		ev := route(apiEvent(t, "status.json"), "/tasks/{id}/devices/{deviceId}", "/tasks/"+tk.ID+"/devices/"+loudDevice)
		var d api.Device
		if resp := call(t, statusFn, ev, &d); resp.StatusCode != 200 {
			t.Fatalf("GET device: %d %s", resp.StatusCode, resp.Body)
		}
		return d
	}
	polled := device()
	if polled.Status != api.DeviceSucceeded || !polled.StdoutTruncated || len(polled.Stdout) >= ssmtest.PluginOutputLimit ||
		!strings.HasPrefix(stdout, polled.Stdout) {
		t.Fatalf("after the poll: %s, %d characters of stdout, truncated %v; want SSM's short copy, flagged",
			polled.Status, len(polled.Stdout), polled.StdoutTruncated)
	}

	// SSM's event for the device's final status reaches the progress function.
	var final json.RawMessage
	for _, raw := range srv.Events() {
		var ev ssmtest.Event
		if json.Unmarshal(raw, &ev) == nil && ev.Detail.InstanceID == loudDevice && ev.Detail.Status == ssmtest.StatusSuccess {
			final = raw
		}
	}
	if final == nil {
		t.Fatal("SSM sent no Success event for the loud device")
	}
	progress(t, progressFn, final)
	full := device()
	if full.Stdout != stdout[:ssmtest.StdoutLimit] || !full.StdoutTruncated ||
		full.Stderr != stderr[:ssmtest.StderrLimit] || !full.StderrTruncated {
		t.Errorf("after the event: %d and %d characters (truncated %v, %v); want SSM's 24,000 and 8,000, flagged",
			len(full.Stdout), len(full.Stderr), full.StdoutTruncated, full.StderrTruncated)
	}
	// StatusFunction links no S3 client, and links the output OutputFunction serves all the same.
	if want := "/tasks/" + tk.ID + "/devices/" + loudDevice + "/output"; !strings.HasPrefix(full.Links.Output, "https://") ||
		!strings.HasSuffix(full.Links.Output, want) {
		t.Errorf("the device's output link is %q, want the API's …%s", full.Links.Output, want)
	}

	t.Logf("output: the poll kept %d characters of stdout, the event %d and %d; /output serves %d and %d bytes",
		len(polled.Stdout), len(full.Stdout), len(full.Stderr), len(stdout), len(stderr))
	for stream, want := range map[string]string{"stdout": stdout, "stderr": stderr} {
		ev := route(apiEvent(t, "status.json"), "/tasks/{id}/devices/{deviceId}/output", "/tasks/"+tk.ID+"/devices/"+loudDevice+"/output")
		setQuery(&ev, "stream", stream)
		setHeader(&ev, "Accept", "text/plain")
		// The output route streams (a followed output streams as it is written), so the
		// answer is a prelude and the bytes themselves.
		req, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := outputFn.Invoke(t.Context(), req)
		if err != nil {
			t.Fatalf("GET output %s: %v", stream, err)
		}
		status, headers, body := streamed(t, raw)
		if status != 200 || headers["Content-Type"] != "text/plain; charset=utf-8" || body != want {
			t.Errorf("GET output %s: %d %s, %d bytes; want 200 and the %d bytes the script wrote",
				stream, status, headers["Content-Type"], len(body), len(want))
		}
	}
}

// inventory asks InventoryFunction for GET /devices?tag:Env=e2e, with two hybrid nodes
// registered in the SSM test server (SSM reports the tags of hybrid nodes itself): the one
// carrying the tag comes back, with its tags, and the other is left out.
func inventory(t *testing.T, fn *lambdatest.Emulator, srv *ssmtest.Server) {
	t.Helper()
	const tagged = "mi-0e2e000000000000a"
	srv.AddNodes(ssmtest.Node{ID: tagged, ComputerName: "e2e-a", PlatformType: "Linux", Tags: map[string]string{"Env": "e2e", "Role": "web"}},
		ssmtest.Node{ID: "mi-0e2e000000000000b", Tags: map[string]string{"Env": "other"}})
	ev := route(apiEvent(t, "list.json"), "/devices", "/devices")
	setQuery(&ev, "tag:Env", "e2e")
	var list api.InventoryList
	resp := call(t, fn, ev, &list)
	if resp.StatusCode != 200 || len(list.Items) != 1 || list.Items[0].ID != tagged || list.Items[0].Name != "e2e-a" ||
		list.Items[0].Tags["Env"] != "e2e" || list.Items[0].Tags["Role"] != "web" {
		t.Errorf("GET /devices?tag:Env=e2e: %d %s; want %s alone, with its tags", resp.StatusCode, resp.Body, tagged)
	}
}
