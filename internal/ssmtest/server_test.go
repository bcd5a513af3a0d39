package ssmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/ssmtest"
)

func instance(n int) string { return fmt.Sprintf("i-%017x", n) }

func remoteScript() map[string][]string {
	return map[string][]string{
		"sourceType":       {"S3"},
		"sourceInfo":       {`{"path":"https://bucket.s3.amazonaws.com/scripts/patch.sh"}`},
		"commandLine":      {"patch.sh --dry-run"},
		"executionTimeout": {"600"},
	}
}

func send(t *testing.T, c *ssm.Client, ids ...string) string {
	t.Helper()
	out, err := c.SendCommand(t.Context(), &ssm.SendCommandInput{
		DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: ids,
		Parameters: remoteScript(), Comment: aws.String("test"), TimeoutSeconds: aws.Int32(600),
	})
	if err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	return aws.ToString(out.Command.CommandId)
}

// poll lists every invocation of commandID once, through the SDK's paginator.
func poll(t *testing.T, c *ssm.Client, commandID string, pageSize int32) map[string]types.CommandInvocation {
	t.Helper()
	got := map[string]types.CommandInvocation{}
	p := ssm.NewListCommandInvocationsPaginator(c, &ssm.ListCommandInvocationsInput{
		CommandId: aws.String(commandID), Details: true, MaxResults: aws.Int32(pageSize)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("ListCommandInvocations: %v", err)
		}
		for _, inv := range page.CommandInvocations {
			id := aws.ToString(inv.InstanceId)
			if _, dup := got[id]; dup {
				t.Fatalf("invocation of %s listed twice", id)
			}
			got[id] = inv
		}
	}
	return got
}

func TestScriptedOutcomes(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	c := srv.Client()
	long := strings.Repeat("x", 3000)
	srv.Script(instance(1), ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: "ok\n"})
	srv.Script(instance(2), ssmtest.Script{Polls: 2, Outcome: ssmtest.Failed, ExitCode: 3, Stdout: "partial\n", Stderr: "boom\n"})
	srv.Script(instance(3), ssmtest.Script{Polls: 1, Outcome: ssmtest.TimedOut})
	srv.Script(instance(4), ssmtest.Script{Polls: 1, Outcome: ssmtest.Undeliverable})
	srv.Script(instance(5), ssmtest.Script{Polls: 0, Outcome: ssmtest.Never})
	srv.Script(instance(6), ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: long})
	// instance(7) has no script: success after one poll.
	id := send(t, c, instance(1), instance(2), instance(3), instance(4), instance(5), instance(6), instance(7))

	type want struct{ status, details string }
	rounds := []map[int]want{
		{1: {"Success", "Success"}, 2: {"InProgress", "InProgress"}, 3: {"InProgress", "InProgress"},
			4: {"Delayed", "Delayed"}, 5: {"InProgress", "InProgress"}, 6: {"Success", "Success"}, 7: {"InProgress", "InProgress"}},
		{2: {"InProgress", "InProgress"}, 3: {"TimedOut", "ExecutionTimedOut"}, 4: {"Failed", "Undeliverable"},
			5: {"InProgress", "InProgress"}, 7: {"Success", "Success"}},
		{2: {"Failed", "Failed"}, 5: {"InProgress", "InProgress"}},
	}
	var last map[string]types.CommandInvocation
	for r, round := range rounds {
		last = poll(t, c, id, 3)
		if len(last) != 7 {
			t.Fatalf("round %d: %d invocations, want 7", r, len(last))
		}
		for n, w := range round {
			inv := last[instance(n)]
			if string(inv.Status) != w.status || aws.ToString(inv.StatusDetails) != w.details {
				t.Errorf("round %d: %s is %s/%s, want %s/%s", r, instance(n), inv.Status, aws.ToString(inv.StatusDetails), w.status, w.details)
			}
		}
	}

	failed := last[instance(2)]
	script := failed.CommandPlugins[len(failed.CommandPlugins)-1]
	if aws.ToString(script.Name) != "runShellScript" || script.ResponseCode != 3 ||
		aws.ToString(script.Output) != "partial\n"+ssmtest.ErrorSeparator+"boom\n" {
		t.Errorf("failed plugin = %s code %d output %q", aws.ToString(script.Name), script.ResponseCode, aws.ToString(script.Output))
	}
	out := aws.ToString(last[instance(6)].CommandPlugins[1].Output)
	if len(out) != ssmtest.PluginOutputLimit || !strings.HasSuffix(out, ssmtest.TruncatedMarker) {
		t.Errorf("long output is %d chars ending %q, want %d ending with the truncation marker", len(out), out[len(out)-30:], ssmtest.PluginOutputLimit)
	}

	gci, err := c.GetCommandInvocation(t.Context(), &ssm.GetCommandInvocationInput{
		CommandId: aws.String(id), InstanceId: aws.String(instance(2)), PluginName: aws.String("runShellScript")})
	if err != nil {
		t.Fatalf("GetCommandInvocation: %v", err)
	}
	if aws.ToString(gci.StandardOutputContent) != "partial\n" || aws.ToString(gci.StandardErrorContent) != "boom\n" || gci.ResponseCode != 3 {
		t.Errorf("GetCommandInvocation = %q / %q / %d", aws.ToString(gci.StandardOutputContent), aws.ToString(gci.StandardErrorContent), gci.ResponseCode)
	}
	gci, err = c.GetCommandInvocation(t.Context(), &ssm.GetCommandInvocationInput{
		CommandId: aws.String(id), InstanceId: aws.String(instance(3)), PluginName: aws.String("runShellScript")})
	if err != nil || aws.ToString(gci.StatusDetails) != "Execution Timed Out" {
		t.Errorf("GetCommandInvocation of a timed-out device: %v, details %q", err, aws.ToString(gci.StatusDetails))
	}
	_, err = c.GetCommandInvocation(t.Context(), &ssm.GetCommandInvocationInput{
		CommandId: aws.String(id), InstanceId: aws.String(instance(99))})
	var missing *types.InvocationDoesNotExist
	if !errors.As(err, &missing) {
		t.Errorf("GetCommandInvocation of an unknown device: %v, want InvocationDoesNotExist", err)
	}
}

func TestListCommandsFiltersAndPages(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	srv.SetNow(func() time.Time { return now })
	c := srv.Client()
	old := send(t, c, instance(1))
	now = now.Add(time.Hour)
	var recent []string
	for i := range 5 {
		recent = append(recent, send(t, c, instance(10+i)))
	}

	var got []string
	p := ssm.NewListCommandsPaginator(c, &ssm.ListCommandsInput{MaxResults: aws.Int32(2), Filters: []types.CommandFilter{
		{Key: types.CommandFilterKeyInvokedAfter, Value: aws.String(now.Add(-time.Minute).Format(time.RFC3339))},
		{Key: types.CommandFilterKeyDocumentName, Value: aws.String(ssmtest.RemoteScriptDocument)},
	}})
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("ListCommands: %v", err)
		}
		pages++
		for _, cmd := range page.Commands {
			got = append(got, aws.ToString(cmd.CommandId))
			if aws.ToString(cmd.Comment) != "test" || cmd.TargetCount != 1 || aws.ToInt32(cmd.TimeoutSeconds) != 600 {
				t.Errorf("command %s: comment %q targets %d timeout %d", aws.ToString(cmd.CommandId),
					aws.ToString(cmd.Comment), cmd.TargetCount, aws.ToInt32(cmd.TimeoutSeconds))
			}
		}
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("ListCommands returned %d commands in %d pages, want 5 in 3", len(got), pages)
	}
	for i, id := range got { // newest first
		if id != recent[4-i] {
			t.Errorf("ListCommands[%d] = %s, want %s", i, id, recent[4-i])
		}
	}

	one, err := c.ListCommands(t.Context(), &ssm.ListCommandsInput{CommandId: aws.String(old)})
	if err != nil || len(one.Commands) != 1 || aws.ToString(one.Commands[0].CommandId) != old {
		t.Errorf("ListCommands by CommandId: %v, %+v", err, one)
	}
	_, err = c.ListCommands(t.Context(), &ssm.ListCommandsInput{CommandId: aws.String("00000000-0000-4000-8000-000000000000")})
	var invalid *types.InvalidCommandId
	if !errors.As(err, &invalid) {
		t.Errorf("ListCommands of an unknown command: %v, want InvalidCommandId", err)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	c := srv.Client()

	srv.ThrottleNext(ssmtest.OpSendCommand, 2)
	send(t, c, instance(1))
	if n := srv.Calls(ssmtest.OpSendCommand); n != 3 {
		t.Errorf("SendCommand reached the server %d times, want 3 (two throttled, retried by the SDK)", n)
	}
	if n := len(srv.Commands()); n != 1 {
		t.Errorf("%d commands accepted, want 1", n)
	}

	srv.FailAfterAccept(ssmtest.OpSendCommand, 1)
	_, err := c.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument),
		InstanceIds: []string{instance(2)}, Parameters: remoteScript()}, func(o *ssm.Options) { o.RetryMaxAttempts = 1 })
	var internal *types.InternalServerError
	if !errors.As(err, &internal) {
		t.Fatalf("SendCommand after FailAfterAccept: %v, want InternalServerError", err)
	}
	cmds := srv.Commands()
	if len(cmds) != 2 || cmds[1].InstanceIDs[0] != instance(2) {
		t.Errorf("the command answered with a 500 was not accepted: %+v", cmds)
	}

	srv.Script(instance(3), ssmtest.Script{Outcome: ssmtest.Invalid})
	_, err = c.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument),
		InstanceIds: []string{instance(4), instance(3)}, Parameters: remoteScript()})
	var badID *types.InvalidInstanceId
	if !errors.As(err, &badID) || !strings.Contains(badID.ErrorMessage(), instance(3)) {
		t.Errorf("SendCommand naming an invalid device: %v, want InvalidInstanceId naming it", err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	c := srv.Client()
	many := make([]string, 51)
	for i := range many {
		many[i] = instance(i)
	}
	params := remoteScript()
	params["executionTimeout"] = []string{"200000"}
	for _, tc := range []struct {
		name string
		in   ssm.SendCommandInput
		code string
	}{
		{"51 instances", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: many, Parameters: remoteScript()}, "ValidationException"},
		{"duplicate", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1), instance(1)}, Parameters: remoteScript()}, "DuplicateInstanceId"},
		{"bad id", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{"web-1"}, Parameters: remoteScript()}, "InvalidInstanceId"},
		{"long comment", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1)}, Parameters: remoteScript(), Comment: aws.String(strings.Repeat("c", 101))}, "ValidationException"},
		{"execution timeout", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1)}, Parameters: params}, "InvalidParameters"},
		{"delivery timeout", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1)}, Parameters: remoteScript(), TimeoutSeconds: aws.Int32(10)}, "ValidationException"},
		{"concurrency", ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1)}, Parameters: remoteScript(), MaxConcurrency: aws.String("0")}, "ValidationException"},
	} {
		_, err := c.SendCommand(t.Context(), &tc.in)
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if n := len(srv.Commands()); n != 0 {
		t.Errorf("%d invalid commands were accepted", n)
	}
}

func TestCancelAndEvents(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	c := srv.Client()
	srv.Script(instance(1), ssmtest.Script{Polls: 0, Outcome: ssmtest.Success})
	srv.Script(instance(2), ssmtest.Script{Polls: 0, Outcome: ssmtest.Never})
	srv.Script(instance(3), ssmtest.Script{Polls: 5, Outcome: ssmtest.Success})
	id := send(t, c, instance(1), instance(2), instance(3))
	poll(t, c, id, 50)

	if _, err := c.CancelCommand(t.Context(), &ssm.CancelCommandInput{CommandId: aws.String(id), InstanceIds: []string{instance(2)}}); err != nil {
		t.Fatalf("CancelCommand: %v", err)
	}
	if st, _ := srv.Invocation(id, instance(2)); st.Status != "Cancelling" {
		t.Errorf("after CancelCommand %s is %s, want Cancelling", instance(2), st.Status)
	}
	got := poll(t, c, id, 50)
	for n, want := range map[int]string{1: "Success", 2: "Cancelled", 3: "InProgress"} {
		if s := string(got[instance(n)].Status); s != want {
			t.Errorf("%s is %s, want %s", instance(n), s, want)
		}
	}
	if _, err := c.CancelCommand(t.Context(), &ssm.CancelCommandInput{CommandId: aws.String(id)}); err != nil {
		t.Fatalf("CancelCommand of the whole command: %v", err)
	}
	if _, err := c.CancelCommand(t.Context(), &ssm.CancelCommandInput{CommandId: aws.String(id)}); err != nil {
		t.Fatalf("repeated CancelCommand: %v", err)
	}
	got = poll(t, c, id, 50)
	if s := got[instance(3)].Status; s != "Cancelled" {
		t.Errorf("%s is %s after cancelling the command, want Cancelled", instance(3), s)
	}
	list, err := c.ListCommands(t.Context(), &ssm.ListCommandsInput{CommandId: aws.String(id)})
	if err != nil || list.Commands[0].Status != types.CommandStatusCancelled {
		t.Errorf("command status after cancel: %v %+v", err, list)
	}
	// Every accepted CancelCommand is recorded as it was sent.
	cancels := srv.Cancels()
	if len(cancels) != 3 || cancels[0].CommandID != id || !slices.Equal(cancels[0].InstanceIDs, []string{instance(2)}) ||
		len(cancels[1].InstanceIDs) != 0 || len(cancels[2].InstanceIDs) != 0 {
		t.Errorf("recorded cancels = %+v; want one naming %s, then two of the whole command", cancels, instance(2))
	}

	raw, err := srv.Event(id, instance(2))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	detail, _ := ev["detail"].(map[string]any)
	if ev["source"] != "aws.ssm" || ev["detail-type"] != ssmtest.InvocationEventType || detail["command-id"] != id ||
		detail["instance-id"] != instance(2) || detail["status"] != "Cancelled" || detail["document-name"] != ssmtest.RemoteScriptDocument {
		t.Errorf("event = %s", raw)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(detail["requested-date-time"])); err != nil {
		t.Errorf("requested-date-time: %v", err)
	}
	var statuses []string
	for _, e := range srv.Events() {
		var ev ssmtest.Event
		if err := json.Unmarshal(e, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Detail.InstanceID == instance(2) {
			statuses = append(statuses, ev.Detail.Status)
		}
	}
	if strings.Join(statuses, ",") != "Pending,InProgress,Cancelling,Cancelled" {
		t.Errorf("events of %s: %v", instance(2), statuses)
	}
}

func TestUnknownOperation(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	_, err := srv.Client().DescribeDocument(context.Background(), &ssm.DescribeDocumentInput{Name: aws.String(ssmtest.RemoteScriptDocument)})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "UnknownOperationException" {
		t.Errorf("unimplemented operation: %v", err)
	}
}

func TestDescribeInstanceInformationFiltersAsSSMDoes(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	srv.AddNodes(
		ssmtest.Node{ID: instance(1), Tags: map[string]string{"Env": "prod"}},
		ssmtest.Node{ID: instance(2), PingStatus: "ConnectionLost", Tags: map[string]string{"Env": "prod"}},
		ssmtest.Node{ID: instance(3), Tags: map[string]string{"Env": "dev"}},
	)
	c := srv.Client()
	out, err := c.DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{
		Filters: []types.InstanceInformationStringFilter{{Key: aws.String("tag:Env"), Values: []string{"prod"}}}})
	if err != nil || len(out.InstanceInformationList) != 2 || out.InstanceInformationList[1].PingStatus != types.PingStatusConnectionLost {
		t.Fatalf("tag:Env=prod = %+v, %v", out, err)
	}
	_, err = c.DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{Filters: []types.InstanceInformationStringFilter{
		{Key: aws.String("tag:Env"), Values: []string{"prod"}}, {Key: aws.String("PingStatus"), Values: []string{"Online"}}}})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidFilter" {
		t.Errorf("a tag filter with a PingStatus filter: %v, want InvalidFilter as SSM answers", err)
	}
	tags, err := c.ListTagsForResource(t.Context(), &ssm.ListTagsForResourceInput{ResourceType: types.ResourceTypeForTaggingManagedInstance,
		ResourceId: aws.String(instance(3))})
	if err != nil || len(tags.TagList) != 1 || aws.ToString(tags.TagList[0].Value) != "dev" {
		t.Errorf("ListTagsForResource = %+v, %v", tags, err)
	}
}

// TestOfflineNodeTimesOutAtTheDeliveryTimeout sends a command with a delivery timeout of 60 s to
// an offline node and a working one, and moves the server's clock: the offline invocation stays
// Pending until the timeout has passed, then ends TimedOut/DeliveryTimedOut, while the other
// one runs as scripted.
func TestOfflineNodeTimesOutAtTheDeliveryTimeout(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now := start
	srv.SetNow(func() time.Time { return now })
	srv.Script(instance(1), ssmtest.Script{Outcome: ssmtest.Offline})
	c := srv.Client()
	out, err := c.SendCommand(t.Context(), &ssm.SendCommandInput{
		DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1), instance(2)},
		Parameters: remoteScript(), TimeoutSeconds: aws.Int32(60)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Command.CommandId)
	for _, step := range []struct {
		at             time.Duration
		offline, other string
	}{
		{0, "Pending/Pending", "InProgress/InProgress"},
		{59 * time.Second, "Pending/Pending", "Success/Success"},
		{60 * time.Second, "TimedOut/DeliveryTimedOut", "Success/Success"},
	} {
		now = start.Add(step.at)
		got := poll(t, c, id, 50)
		state := func(n int) string {
			inv := got[instance(n)]
			return string(inv.Status) + "/" + aws.ToString(inv.StatusDetails)
		}
		if state(1) != step.offline || state(2) != step.other {
			t.Errorf("at +%v: offline %s, other %s; want %s and %s", step.at, state(1), state(2), step.offline, step.other)
		}
	}
	// Settle does not end an offline invocation early either.
	srv.Script(instance(3), ssmtest.Script{Outcome: ssmtest.Offline})
	out, err = c.SendCommand(t.Context(), &ssm.SendCommandInput{
		DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(3)},
		Parameters: remoteScript(), TimeoutSeconds: aws.Int32(30)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Settle()
	if st, _ := srv.Invocation(aws.ToString(out.Command.CommandId), instance(3)); st.Status != ssmtest.StatusPending {
		t.Errorf("after Settle the offline invocation is %s, want Pending", st.Status)
	}
}

// TestOutputIsWrittenWhereTheAgentWritesIt runs a command with an output bucket and checks that
// each finished invocation's streams reach the output writer under the agent's key layout
// (empty streams are skipped, as the agent skips them), before the poll that saw them finish
// returns, and that the URLs SSM reports name the same keys.
func TestOutputIsWrittenWhereTheAgentWritesIt(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	written := map[string]string{}
	srv.SetOutputWriter(func(_ context.Context, bucket, key string, body []byte) error {
		written[bucket+"/"+key] = string(body)
		return nil
	})
	srv.Script(instance(1), ssmtest.Script{Polls: 0, Outcome: ssmtest.Failed, ExitCode: 2, Stdout: "out\n", Stderr: "err\n"})
	srv.Script(instance(2), ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: "only stdout\n"})
	c := srv.Client()
	out, err := c.SendCommand(t.Context(), &ssm.SendCommandInput{
		DocumentName: aws.String(ssmtest.RemoteScriptDocument), InstanceIds: []string{instance(1), instance(2)},
		Parameters: remoteScript(), OutputS3BucketName: aws.String("out-bucket"), OutputS3KeyPrefix: aws.String("fleetrun/T1")})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Command.CommandId)
	got := poll(t, c, id, 50)
	key := func(n int, stream string) string {
		return "out-bucket/fleetrun/T1/" + id + "/" + instance(n) + "/awsrunShellScript/runShellScript/" + stream
	}
	want := map[string]string{key(1, "stdout"): "out\n", key(1, "stderr"): "err\n", key(2, "stdout"): "only stdout\n"}
	if fmt.Sprint(written) != fmt.Sprint(want) {
		t.Errorf("written %v, want %v", written, want)
	}
	plugin := got[instance(1)].CommandPlugins[1]
	if u := aws.ToString(plugin.StandardOutputUrl); u != "https://s3."+ssmtest.Region+".amazonaws.com/"+key(1, "stdout") {
		t.Errorf("StandardOutputUrl = %s", u)
	}
	if errs := srv.UploadErrors(); len(errs) > 0 {
		t.Errorf("upload errors: %v", errs)
	}
}

// TestFailUntil checks an outage measured on the server's clock: every call fails until the
// clock reaches the end of the outage, and none after.
func TestFailUntil(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	start := time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	now := start
	srv.SetNow(func() time.Time { return now })
	srv.FailUntil(ssmtest.OpSendCommand, start.Add(10*time.Minute), 400, "ThrottlingException", "Rate exceeded")
	c := srv.Client(func(o *ssm.Options) { o.RetryMaxAttempts = 1 })
	sendAt := func(d time.Duration) error {
		now = start.Add(d)
		_, err := c.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String(ssmtest.RemoteScriptDocument),
			InstanceIds: []string{instance(1)}, Parameters: remoteScript()})
		return err
	}
	for _, d := range []time.Duration{0, 5 * time.Minute, 10*time.Minute - time.Second} {
		var api smithy.APIError
		if err := sendAt(d); !errors.As(err, &api) || api.ErrorCode() != "ThrottlingException" {
			t.Errorf("at +%v: %v, want ThrottlingException", d, err)
		}
	}
	if err := sendAt(10 * time.Minute); err != nil {
		t.Errorf("after the outage: %v", err)
	}
	if n := len(srv.Commands()); n != 1 {
		t.Errorf("%d commands accepted, want the one after the outage", n)
	}
}
