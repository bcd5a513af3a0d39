package localstore

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current format")

// goldenRecords are one record of each kind, with every field set, as the golden files hold
// them.
func goldenRecords() (*task.Task, *task.Device, *task.IdempotencyRecord, *task.Delivery, *task.WebhookJob) {
	at := func(s int) time.Time { return time.Date(2030, 5, 6, 7, 8, s, 123456789, time.UTC) }
	t := &task.Task{ID: "01JD0000000000000000000000", Owner: "alice", Status: task.StatusCompleted, Version: 7,
		CreatedAt: at(1), UpdatedAt: at(9), StartedAt: new(at(2)), CompletedAt: new(at(9)), ExpiresAt: at(59),
		Request: task.Request{ScriptURL: "ops/patch.sh", Args: []string{"--dry-run", "it's"}, TimeoutSeconds: 600, DeliveryTimeoutSeconds: 120,
			MaxConcurrency: "10%", MaxErrors: "1", IncludeOffline: true,
			Targets: []task.Target{{Key: "tag:Env", Values: []string{"prod"}}, {Key: "tag:Role", Values: []string{"web", "db"}}},
			Notify: &task.Notify{URL: "https://hooks.example.com/fleet",
				Events: []task.WebhookType{task.WebhookTaskStarted, task.WebhookTaskFinished}, Links: "https://fleet.example.com"}},
		Counts:      task.Counts{Total: 8, Running: 1, Succeeded: 2, Failed: 1, TimedOut: 1, Cancelled: 2, Undeliverable: 1},
		CurrentStep: "finished",
		Result: &task.Result{SucceededDevices: []string{"a", "b"}, FailedDevices: []string{"c", "d", "e"},
			CancelledDevices: []string{"f", "g"}, Truncated: true, Reason: "the reason"},
		Published: true, RelaunchOf: "01JC0000000000000000000000"}
	d := &task.Device{TaskID: t.ID, ID: "web-1", Status: task.DeviceFailed, ExitCode: new(3), Stdout: "out\n",
		Stderr: "err\n", StdoutTruncated: true, StderrTruncated: true, StartedAt: new(at(3)), CompletedAt: new(at(4)),
		Reason: "the script exited 3", Ref: "pgid:4242", CancelRequestedAt: new(at(3))}
	idem := &task.IdempotencyRecord{Owner: "alice", Key: "key-1", TaskID: t.ID, RequestHash: "abc123", ExpiresAt: at(30)}
	del := &task.Delivery{TaskID: t.ID, EventID: t.ID + "_finished", Type: task.WebhookTaskFinished, EventAt: at(9),
		Attempt: 2, At: at(20), StatusCode: 503, Error: "the receiver answered 503", Outcome: task.DeliveryRetrying,
		NextAttemptAt: new(at(31))}
	job := &task.WebhookJob{ID: t.ID + "_finished", Type: task.WebhookTaskFinished, TaskID: t.ID,
		URL: "https://hooks.example.com/fleet", At: at(9), Links: "https://fleet.example.com",
		Payload: []byte(`{"type":"task.finished"}`), Attempt: 2, FirstAttemptAt: at(10), NextAt: at(31)}
	return t, d, idem, del, job
}

// TestFileFormatIsStable writes one record of each kind and compares the bytes with the golden
// files, then reads the golden files back: a change to the domain types that would change the
// file format, or misread an existing file, fails here. Run with -update after a deliberate
// change of the format (and a new schemaVersion).
func TestFileFormatIsStable(t *testing.T) {
	t.Parallel()
	tk, dev, idem, del, job := goldenRecords()
	taskBytes, err := encodeTask(42, tk)
	if err != nil {
		t.Fatal(err)
	}
	devBytes, err := encodeDevice(dev)
	if err != nil {
		t.Fatal(err)
	}
	idemBytes, err := encodeIdem(idem)
	if err != nil {
		t.Fatal(err)
	}
	delBytes, err := encodeDelivery(del)
	if err != nil {
		t.Fatal(err)
	}
	jobBytes, err := encodeHook(job)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"task.json": taskBytes, "device.json": devBytes, "idempotency.json": idemBytes,
		"delivery.json": delBytes, "hook.json": jobBytes} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
			t.Errorf("%s: the store writes\n%s\nthe golden file holds\n%s", name, got, want)
		}
	}

	raw, _ := os.ReadFile(filepath.Join("testdata", "task.json"))
	seq, gotTask, err := decodeTask(raw)
	if err != nil || seq != 42 || !reflect.DeepEqual(gotTask, tk) {
		t.Errorf("task.json reads as %d %+v, %v; want 42 %+v", seq, gotTask, err, tk)
	}
	raw, _ = os.ReadFile(filepath.Join("testdata", "device.json"))
	if got, err := decodeDevice(raw); err != nil || !reflect.DeepEqual(got, dev) {
		t.Errorf("device.json reads as %+v, %v; want %+v", got, err, dev)
	}
	raw, _ = os.ReadFile(filepath.Join("testdata", "idempotency.json"))
	if got, err := decodeIdem(raw); err != nil || !reflect.DeepEqual(got, idem) {
		t.Errorf("idempotency.json reads as %+v, %v; want %+v", got, err, idem)
	}
	raw, _ = os.ReadFile(filepath.Join("testdata", "delivery.json"))
	if got, err := decodeDelivery(raw); err != nil || !reflect.DeepEqual(got, del) {
		t.Errorf("delivery.json reads as %+v, %v; want %+v", got, err, del)
	}
	raw, _ = os.ReadFile(filepath.Join("testdata", "hook.json"))
	if got, err := decodeHook(raw); err != nil || !reflect.DeepEqual(got, job) {
		t.Errorf("hook.json reads as %+v, %v; want %+v", got, err, job)
	}
}
