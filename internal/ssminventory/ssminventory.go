// Package ssminventory is fleetrun's inventory on AWS: the SSM managed nodes a submit may
// target by tag, listed with DescribeInstanceInformation. Its tag filters ("tag:Env") are the
// targets' rule, AND across filters and OR within values; since SSM does not let them be
// combined with a PingStatus filter, nodes that are not Online are left out here, unless the
// resolution asks for them.
//
// DescribeInstanceInformation returns no tags. A listing reads them for the nodes of its page:
// an EC2 instance's (i-…) from EC2 with one DescribeTags per page, a hybrid node's (mi-…) from
// SSM's ListTagsForResource, one call per node.
package ssminventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/task"
)

// SSM is the part of *ssm.Client the inventory uses.
type SSM interface {
	DescribeInstanceInformation(ctx context.Context, in *ssm.DescribeInstanceInformationInput, optFns ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error)
	ListTagsForResource(ctx context.Context, in *ssm.ListTagsForResourceInput, optFns ...func(*ssm.Options)) (*ssm.ListTagsForResourceOutput, error)
}

// EC2 is the part of *ec2.Client the inventory uses.
type EC2 interface {
	DescribeTags(ctx context.Context, in *ec2.DescribeTagsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeTagsOutput, error)
}

// Config wires an Inventory. SSM is required; without EC2, EC2 instances are listed without
// their tags.
type Config struct {
	SSM    SSM
	EC2    EC2
	Logger *slog.Logger
}

// Inventory lists SSM's managed nodes. It is safe for concurrent use.
type Inventory struct {
	cfg Config
	log *slog.Logger
}

// New returns an Inventory for cfg.
func New(cfg Config) *Inventory {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Inventory{cfg: cfg, log: cfg.Logger}
}

// pageSize is the most nodes DescribeInstanceInformation returns at once, and so the largest
// page of a listing.
const pageSize = 50

// filters turns targets into DescribeInstanceInformation's tag filters.
func filters(targets []task.Target) []types.InstanceInformationStringFilter {
	out := make([]types.InstanceInformationStringFilter, len(targets))
	for i, t := range targets {
		out[i] = types.InstanceInformationStringFilter{Key: aws.String(t.Key), Values: t.Values}
	}
	return out
}

// Resolve implements engine.Inventory: the managed nodes that match every target, in SSM's
// order, Online ones only unless r.IncludeOffline, at most r.Limit of them.
func (i *Inventory) Resolve(ctx context.Context, r task.Resolution) ([]string, error) {
	in := &ssm.DescribeInstanceInformationInput{Filters: filters(r.Targets), MaxResults: aws.Int32(pageSize)}
	var ids []string
	for {
		out, err := i.cfg.SSM.DescribeInstanceInformation(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("ssminventory: resolve targets: %w", err)
		}
		for _, n := range out.InstanceInformationList {
			if !r.IncludeOffline && n.PingStatus != types.PingStatusOnline {
				continue
			}
			ids = append(ids, aws.ToString(n.InstanceId))
			if r.Limit > 0 && len(ids) == r.Limit {
				return ids, nil
			}
		}
		if aws.ToString(out.NextToken) == "" {
			return ids, nil
		}
		in.NextToken = out.NextToken
	}
}

// List implements engine.Inventory: one DescribeInstanceInformation page of the nodes that
// match q's targets, online or not, at most 50, with their tags. The cursor is SSM's token.
func (i *Inventory) List(ctx context.Context, q task.InventoryQuery) (*task.InventoryPage, error) {
	in := &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(int32(max(5, min(task.PageSize(q.Limit), pageSize))))}
	if len(q.Targets) > 0 {
		in.Filters = filters(q.Targets)
	}
	if q.Cursor != "" {
		in.NextToken = aws.String(q.Cursor)
	}
	out, err := i.cfg.SSM.DescribeInstanceInformation(ctx, in)
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "InvalidNextToken" {
		return nil, task.BadCursor()
	}
	if err != nil {
		return nil, fmt.Errorf("ssminventory: list managed nodes: %w", err)
	}
	page := &task.InventoryPage{Devices: make([]task.InventoryDevice, 0, len(out.InstanceInformationList)), Next: aws.ToString(out.NextToken)}
	var instances []string
	for _, n := range out.InstanceInformationList {
		id := aws.ToString(n.InstanceId)
		page.Devices = append(page.Devices, task.InventoryDevice{ID: id, Name: aws.ToString(n.ComputerName),
			Platform: string(n.PlatformType), PingStatus: string(n.PingStatus), Tags: map[string]string{}})
		if strings.HasPrefix(id, "i-") {
			instances = append(instances, id)
		}
	}
	if err := i.instanceTags(ctx, instances, page.Devices); err != nil {
		return nil, err
	}
	for k := range page.Devices {
		if d := &page.Devices[k]; strings.HasPrefix(d.ID, "mi-") {
			if err := i.nodeTags(ctx, d); err != nil {
				return nil, err
			}
		}
	}
	return page, nil
}

// instanceTags fills in the tags of the EC2 instances among devices, with DescribeTags.
func (i *Inventory) instanceTags(ctx context.Context, ids []string, devices []task.InventoryDevice) error {
	if len(ids) == 0 || i.cfg.EC2 == nil {
		return nil
	}
	byID := make(map[string]*task.InventoryDevice, len(devices))
	for k := range devices {
		byID[devices[k].ID] = &devices[k]
	}
	p := ec2.NewDescribeTagsPaginator(i.cfg.EC2, &ec2.DescribeTagsInput{
		Filters: []ec2types.Filter{{Name: aws.String("resource-id"), Values: ids}}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("ssminventory: tags of %d instances: %w", len(ids), err)
		}
		for _, t := range out.Tags {
			if d := byID[aws.ToString(t.ResourceId)]; d != nil {
				d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
		}
	}
	return nil
}

// nodeTags fills in the tags of a hybrid node with SSM's ListTagsForResource.
func (i *Inventory) nodeTags(ctx context.Context, d *task.InventoryDevice) error {
	out, err := i.cfg.SSM.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{
		ResourceType: types.ResourceTypeForTaggingManagedInstance, ResourceId: aws.String(d.ID)})
	if err != nil {
		return fmt.Errorf("ssminventory: tags of %s: %w", d.ID, err)
	}
	for _, t := range out.TagList {
		d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return nil
}
