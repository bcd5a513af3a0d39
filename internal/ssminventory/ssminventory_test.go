package ssminventory_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/ssminventory"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// sixNodes are six managed nodes in two tags, one of them offline, as the SSM test server
// lists them.
var sixNodes = []ssmtest.Node{
	{ID: "i-0000000000000a001", ComputerName: "web-1", PlatformType: "Linux", Tags: map[string]string{"Env": "prod", "Role": "web"}},
	{ID: "i-0000000000000a002", ComputerName: "web-2", PlatformType: "Linux", Tags: map[string]string{"Env": "staging", "Role": "web"}},
	{ID: "mi-000000000000a0003", ComputerName: "db-1", PlatformType: "Linux", Tags: map[string]string{"Env": "prod", "Role": "db"}},
	{ID: "i-0000000000000a004", ComputerName: "db-2", PlatformType: "Windows", Tags: map[string]string{"Env": "staging", "Role": "db"}},
	{ID: "i-0000000000000a005", ComputerName: "cache-1", PlatformType: "Linux", Tags: map[string]string{"Env": "prod", "Role": "cache"}},
	{ID: "i-0000000000000a006", ComputerName: "web-3", PlatformType: "Linux", PingStatus: "ConnectionLost", Tags: map[string]string{"Env": "prod", "Role": "web"}},
}

// TestResolveAndsTargetsAndOrsValues resolves targets against the SSM test server: SSM's tag
// filters apply the rule, and offline nodes are left out unless asked for.
func TestResolveAndsTargetsAndOrsValues(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	srv.AddNodes(sixNodes...)
	inv := ssminventory.New(ssminventory.Config{SSM: srv.Client()})
	prodWebDB := []task.Target{{Key: "tag:Env", Values: []string{"prod"}}, {Key: "tag:Role", Values: []string{"web", "db"}}}
	cases := []struct {
		name string
		r    task.Resolution
		want []string
	}{
		{"AND across, OR within", task.Resolution{Targets: prodWebDB, Limit: 10001}, []string{sixNodes[0].ID, sixNodes[2].ID}},
		{"offline too", task.Resolution{Targets: prodWebDB, IncludeOffline: true, Limit: 10001},
			[]string{sixNodes[0].ID, sixNodes[2].ID, sixNodes[5].ID}},
		{"one tag", task.Resolution{Targets: []task.Target{{Key: "tag:Role", Values: []string{"db"}}}, Limit: 10001},
			[]string{sixNodes[2].ID, sixNodes[3].ID}},
		{"nothing", task.Resolution{Targets: []task.Target{{Key: "tag:Env", Values: []string{"dev"}}}, Limit: 10001}, nil},
		{"a limit", task.Resolution{Targets: []task.Target{{Key: "tag:Env", Values: []string{"prod", "staging"}}}, Limit: 2},
			[]string{sixNodes[0].ID, sixNodes[1].ID}},
	}
	for _, c := range cases {
		got, err := inv.Resolve(t.Context(), c.r)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: Resolve = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestResolvePagesThroughSSM resolves more nodes than one page holds.
func TestResolvePagesThroughSSM(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	var nodes []ssmtest.Node
	for i := range 120 {
		nodes = append(nodes, ssmtest.Node{ID: fmt.Sprintf("i-%017x", i+1), Tags: map[string]string{"Fleet": "big"}})
	}
	srv.AddNodes(nodes...)
	inv := ssminventory.New(ssminventory.Config{SSM: srv.Client()})
	got, err := inv.Resolve(t.Context(), task.Resolution{Targets: []task.Target{{Key: "tag:Fleet", Values: []string{"big"}}}, Limit: 101})
	if err != nil || len(got) != 101 {
		t.Fatalf("Resolve with a limit of 101 over 120 nodes = %d ids, %v", len(got), err)
	}
	if n := srv.Calls(ssmtest.OpDescribeInstanceInformation); n != 3 {
		t.Errorf("%d DescribeInstanceInformation calls, want 3 pages of 50", n)
	}
}

// TestListReadsTags lists the nodes with their tags: an EC2 instance's from EC2 (moto), a
// hybrid node's from SSM.
func TestListReadsTags(t *testing.T) {
	t.Parallel()
	srv := ssmtest.Start(t)
	srv.AddNodes(sixNodes...)
	ec2c := ec2.NewFromConfig(awstest.Config(t))
	if err := ssmtest.TagEC2Instances(t.Context(), ec2c, sixNodes...); err != nil {
		t.Fatalf("tag the instances in moto: %v", err)
	}
	inv := ssminventory.New(ssminventory.Config{SSM: srv.Client(), EC2: ec2c})
	page, err := inv.List(t.Context(), task.InventoryQuery{Targets: []task.Target{{Key: "tag:Env", Values: []string{"prod"}}}, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range page.Devices {
		ids = append(ids, d.ID)
	}
	want := []string{sixNodes[0].ID, sixNodes[2].ID, sixNodes[4].ID, sixNodes[5].ID}
	if !slices.Equal(ids, want) || page.Next != "" {
		t.Fatalf("List(tag:Env=prod) = %v next %q, want %v", ids, page.Next, want)
	}
	for k, d := range page.Devices {
		n := sixNodes[slices.IndexFunc(sixNodes, func(n ssmtest.Node) bool { return n.ID == want[k] })]
		if d.Tags["Env"] != n.Tags["Env"] || d.Tags["Role"] != n.Tags["Role"] || d.Name != n.ComputerName || d.Platform != n.PlatformType {
			t.Errorf("device %s = %+v, want the node's name, platform and tags %v", d.ID, d, n.Tags)
		}
	}
	if page.Devices[3].PingStatus != "ConnectionLost" || page.Devices[0].PingStatus != task.PingOnline {
		t.Errorf("ping statuses = %s, %s", page.Devices[0].PingStatus, page.Devices[3].PingStatus)
	}
	// Five at a time, the second page continues with SSM's token.
	first, err := inv.List(t.Context(), task.InventoryQuery{Limit: 5})
	if err != nil || len(first.Devices) != 5 || first.Next == "" {
		t.Fatalf("first page = %+v, %v", first, err)
	}
	second, err := inv.List(t.Context(), task.InventoryQuery{Limit: 5, Cursor: first.Next})
	if err != nil || len(second.Devices) != 1 || second.Devices[0].ID != sixNodes[5].ID {
		t.Fatalf("second page = %+v, %v", second, err)
	}
	if _, err := inv.List(t.Context(), task.InventoryQuery{Cursor: "nonsense"}); !task.IsCode(err, task.CodeInvalidQuery) {
		t.Errorf("a cursor SSM did not make: %v", err)
	}
}
