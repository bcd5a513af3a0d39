package awsflow

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestCancelThreeOfTwentyDevicesOnAWS cancels 3 devices of a 20-device task while the rest run,
// through DELETE /tasks/{id}/devices/{deviceId} on the functions' HTTP API: each answers 202,
// the executor sends SSM one CancelCommand naming exactly that instance, the 3 end cancelled,
// the 17 others succeed and the task completes with the counts adding up.
//
// It reads the shared SSM server's cancels, so it does not run in parallel.
func TestCancelThreeOfTwentyDevicesOnAWS(t *testing.T) {
	f := newFlow(t)
	app := f.wireApp(t)
	h := f.api(t, app)
	ids := f.devices(20)
	victims := []string{ids[2], ids[9], ids[17]}
	for _, id := range ids {
		sc := ssmtest.Script{Polls: 4, Outcome: ssmtest.Success, Stdout: "patched\n"}
		if slices.Contains(victims, id) {
			sc = ssmtest.Script{Outcome: ssmtest.Never}
		}
		ssmServer.Script(id, sc)
	}
	body := fmt.Sprintf(`{"deviceIds":["%s"],"scriptUrl":%q}`, strings.Join(ids, `","`), scriptURL)
	var tk api.Task
	h.must(202, "POST", "/tasks", body).decode(t, &tk)
	f.handleOnly(t, engine.ActionDispatch)
	f.runUntil(t, tk.ID, 5, func(tk *task.Task) bool { return tk.Counts.Running == 20 })

	cancelsBefore := len(ssmServer.Cancels())
	for _, id := range victims {
		var d api.Device
		a := h.must(202, "DELETE", "/tasks/"+tk.ID+"/devices/"+id, "")
		a.decode(t, &d)
		if d.Status != api.DeviceRunning || d.CancelRequestedAt == nil || a.header["Location"] != d.Links.Self {
			t.Fatalf("DELETE of running device %s: %+v, Location %q", id, d, a.header["Location"])
		}
	}
	final := f.runUntil(t, tk.ID, 20, terminal)
	if want := (task.Counts{Total: 20, Succeeded: 17, Cancelled: 3}); final.Status != task.StatusCompleted || final.Counts != want {
		t.Fatalf("final: %s %+v; want completed %+v", final.Status, final.Counts, want)
	}
	if !slices.Equal(final.Result.CancelledDevices, victims) {
		t.Errorf("result lists %v cancelled, want %v", final.Result.CancelledDevices, victims)
	}
	cancels := ssmServer.Cancels()[cancelsBefore:]
	var named []string
	for _, c := range cancels {
		if len(c.InstanceIDs) != 1 {
			t.Errorf("a CancelCommand named %v, want exactly one instance", c.InstanceIDs)
			continue
		}
		named = append(named, c.InstanceIDs[0])
	}
	slices.Sort(named)
	if want := slices.Sorted(slices.Values(victims)); !slices.Equal(slices.Compact(named), want) {
		t.Errorf("CancelCommand named %v, want each of %v", named, want)
	}
	devs := f.deviceStates(t, tk.ID)
	for _, id := range victims {
		if d := devs[id]; d.Status != task.DeviceCancelled || d.CancelRequestedAt == nil {
			t.Errorf("device %s = %s (asked %v), want cancelled by request", id, d.Status, d.CancelRequestedAt)
		}
	}
	// A device of a finished task cannot be cancelled any more.
	var p api.Problem
	h.must(409, "DELETE", "/tasks/"+tk.ID+"/devices/"+ids[0], "").decode(t, &p)
	if p.TaskStatus != api.StatusCompleted || p.DeviceStatus != api.DeviceSucceeded {
		t.Errorf("DELETE of a device of a finished task: %+v", p)
	}
	f.noDeadLetters(t)
}

// TestRelaunchFailedOnAWS relaunches the failed devices of a finished task through POST
// /tasks/{id}/relaunch: the new task runs exactly those, names its original, is listed by the
// original's relaunches link, and the same Idempotency-Key returns it again.
func TestRelaunchFailedOnAWS(t *testing.T) {
	f := newFlow(t)
	app := f.wireApp(t)
	h := f.api(t, app)
	ids := f.devices(5)
	for i, id := range ids {
		sc := ssmtest.Script{Polls: 0, Outcome: ssmtest.Success}
		if i%2 == 1 {
			sc = ssmtest.Script{Polls: 0, Outcome: ssmtest.Failed, ExitCode: 3, Stderr: "disk full\n"}
		}
		ssmServer.Script(id, sc)
	}
	orig := f.submit(t, ids)
	f.runUntil(t, orig.ID, 10, terminal)

	const key = "relaunch-failed"
	var again api.Task
	a := h.must(202, "POST", "/tasks/"+orig.ID+"/relaunch", `{"devices":"failed"}`, "Idempotency-Key", key)
	a.decode(t, &again)
	if again.RelaunchOf == nil || again.RelaunchOf.ID != orig.ID || again.Request.DeviceCount != 2 || a.header["Location"] != again.Links.Self {
		t.Fatalf("relaunch: %+v", again)
	}
	var replay api.Task
	a = h.must(202, "POST", "/tasks/"+orig.ID+"/relaunch", `{ "devices": "failed" }`, "Idempotency-Key", key)
	if a.decode(t, &replay); replay.ID != again.ID || a.header["Idempotent-Replayed"] != "true" {
		t.Errorf("replay: %s (replayed %q), want %s", replay.ID, a.header["Idempotent-Replayed"], again.ID)
	}
	var original api.Task
	h.must(200, "GET", "/tasks/"+orig.ID, "").decode(t, &original)
	var list api.TaskList
	h.must(200, "GET", original.Links.Relaunches, "").decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != again.ID {
		t.Errorf("relaunches of the original: %+v", list)
	}
	// The relaunch runs on exactly the failed devices.
	f.runUntil(t, again.ID, 10, terminal)
	var sent []string
	for _, c := range commands(again.ID) {
		sent = append(sent, c.InstanceIDs...)
	}
	if want := []string{ids[1], ids[3]}; !slices.Equal(sent, want) {
		t.Errorf("the relaunch was sent to %v, want %v", sent, want)
	}
	// A task that has not finished is a 409; "failed" with nothing failed a 422.
	clean := f.submit(t, f.devices(1))
	h.must(409, "POST", "/tasks/"+clean.ID+"/relaunch", `{"devices":"all"}`)
	for _, id := range clean.Request.DeviceIDs {
		ssmServer.Script(id, ssmtest.Script{Polls: 0, Outcome: ssmtest.Success})
	}
	f.runUntil(t, clean.ID, 10, terminal)
	h.must(422, "POST", "/tasks/"+clean.ID+"/relaunch", `{"devices":"failed"}`)
}

// TestTargetsOnAWS submits with tag targets through the functions' HTTP API: SSM's managed
// nodes (the SSM test server) are resolved with the AND/OR rule, online ones only; no match
// and more than 10,000 are 422s that store and queue nothing; GET /devices lists the nodes
// with their tags (EC2's from moto, a hybrid node's from SSM).
//
// It adds nodes to the shared SSM server, with tags no other test uses.
func TestTargetsOnAWS(t *testing.T) {
	f := newFlow(t)
	app := f.wireApp(t)
	h := f.api(t, app)
	env := func(s string) string { return fmt.Sprintf("%s-%d", s, f.seq) }
	ids := f.devices(5)
	hybrid := fmt.Sprintf("mi-%05x%012x", f.seq, 0xfff)
	nodes := []ssmtest.Node{
		{ID: ids[0], ComputerName: "web-1", PlatformType: "Linux", Tags: map[string]string{"Env": env("prod"), "Role": "web"}},
		{ID: ids[1], ComputerName: "web-2", PlatformType: "Linux", Tags: map[string]string{"Env": env("staging"), "Role": "web"}},
		{ID: hybrid, ComputerName: "db-1", PlatformType: "Linux", Tags: map[string]string{"Env": env("prod"), "Role": "db"}},
		{ID: ids[2], ComputerName: "db-2", PlatformType: "Linux", Tags: map[string]string{"Env": env("staging"), "Role": "db"}},
		{ID: ids[3], ComputerName: "cache-1", PlatformType: "Linux", Tags: map[string]string{"Env": env("prod"), "Role": "cache"}},
		{ID: ids[4], ComputerName: "web-3", PlatformType: "Linux", PingStatus: "ConnectionLost", Tags: map[string]string{"Env": env("prod"), "Role": "web"}},
	}
	ssmServer.AddNodes(nodes...)
	ec2c := ec2.NewFromConfig(f.base)
	if err := ssmtest.TagEC2Instances(t.Context(), ec2c, nodes...); err != nil {
		t.Fatalf("tag the instances in moto: %v", err)
	}

	targets := fmt.Sprintf(`[{"key":"tag:Env","values":[%q]},{"key":"tag:Role","values":["web","db"]}]`, env("prod"))
	var tk api.Task
	h.must(202, "POST", "/tasks", fmt.Sprintf(`{"targets":%s,"scriptUrl":%q}`, targets, scriptURL)).decode(t, &tk)
	if tk.Request.DeviceCount != 2 || len(tk.Request.Targets) != 2 {
		t.Fatalf("submit with targets: %+v", tk.Request)
	}
	if got := f.task(t, tk.ID).Request.DeviceIDs; !slices.Equal(got, []string{ids[0], hybrid}) {
		t.Errorf("the targets resolved to %v, want %v (online, prod, web or db)", got, []string{ids[0], hybrid})
	}
	h.must(202, "POST", "/tasks", fmt.Sprintf(`{"targets":%s,"includeOffline":true,"scriptUrl":%q}`, targets, scriptURL)).decode(t, &tk)
	if tk.Request.DeviceCount != 3 {
		t.Errorf("with includeOffline the targets resolved to %d devices, want 3", tk.Request.DeviceCount)
	}

	// No match and too many: 422, and nothing stored or queued.
	var before api.TaskList
	h.must(200, "GET", "/tasks?limit=100", "").decode(t, &before)
	f.drain(t)
	h.must(422, "POST", "/tasks", fmt.Sprintf(`{"targets":[{"key":"tag:Env","values":[%q]}],"scriptUrl":%q}`, env("dev"), scriptURL))
	huge := make([]ssmtest.Node, task.MaxDevices+1)
	for i := range huge {
		huge[i] = ssmtest.Node{ID: fmt.Sprintf("i-%05x%012x", f.seq, 0x100000+i), Tags: map[string]string{"Fleet": env("huge")}}
	}
	ssmServer.AddNodes(huge...)
	var p api.Problem
	h.must(422, "POST", "/tasks", fmt.Sprintf(`{"targets":[{"key":"tag:Fleet","values":[%q]}],"scriptUrl":%q}`, env("huge"), scriptURL)).decode(t, &p)
	if len(p.Errors) != 1 || p.Errors[0].Pointer != "/targets" || !strings.Contains(p.Errors[0].Detail, "more than 10000") {
		t.Errorf("too many matches: %+v", p)
	}
	var after api.TaskList
	h.must(200, "GET", "/tasks?limit=100", "").decode(t, &after)
	if len(after.Items) != len(before.Items) {
		t.Errorf("refused submits stored tasks: %d before, %d after", len(before.Items), len(after.Items))
	}
	if d := f.deliver(t); len(d.records) != 0 {
		t.Errorf("refused submits queued %d messages", len(d.records))
	}

	// The inventory, with tags from EC2 and from SSM.
	var inv api.InventoryList
	h.must(200, "GET", "/devices?tag:Env="+env("prod")+"&limit=10", "").decode(t, &inv)
	got := map[string]api.InventoryDevice{}
	for _, d := range inv.Items {
		got[d.ID] = d
	}
	for _, n := range nodes {
		d, ok := got[n.ID]
		switch {
		case n.Tags["Env"] != env("prod"):
			if ok {
				t.Errorf("GET /devices by Env listed %s of %s", n.ID, n.Tags["Env"])
			}
		case !ok:
			t.Errorf("GET /devices by Env left out %s", n.ID)
		case d.Tags["Role"] != n.Tags["Role"] || d.Name != n.ComputerName || (n.PingStatus != "" && d.PingStatus != n.PingStatus):
			t.Errorf("GET /devices: %+v, want the node %+v", d, n)
		}
	}
}
