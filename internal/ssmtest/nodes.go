package ssmtest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// The managed-node operations the server speaks, beyond Run Command.
const (
	OpDescribeInstanceInformation = "DescribeInstanceInformation"
	OpListTagsForResource         = "ListTagsForResource"
)

// Node is a managed node as SSM knows it: what DescribeInstanceInformation lists, with the
// tags its filters select on.
type Node struct {
	ID string
	// ComputerName, PlatformType ("Linux", "Windows", "MacOS") and PingStatus ("Online",
	// "ConnectionLost") are reported as given; PingStatus is "Online" when empty.
	ComputerName string
	PlatformType string
	PingStatus   string
	Tags         map[string]string
}

// AddNodes registers managed nodes, in the order DescribeInstanceInformation lists them.
func (s *Server) AddNodes(nodes ...Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nodes {
		if n.PingStatus == "" {
			n.PingStatus = "Online"
		}
		n.Tags = maps.Clone(n.Tags)
		s.nodes = append(s.nodes, n)
	}
}

type instanceInformationFilter struct {
	Key    string   `json:"Key"`
	Values []string `json:"Values"`
}

type describeInstanceInformationRequest struct {
	Filters                       []instanceInformationFilter `json:"Filters"`
	InstanceInformationFilterList []map[string]any            `json:"InstanceInformationFilterList"`
	MaxResults                    *int                        `json:"MaxResults"`
	NextToken                     string                      `json:"NextToken"`
}

type instanceInformationJSON struct {
	InstanceId   string `json:"InstanceId"`
	ComputerName string `json:"ComputerName,omitempty"`
	PlatformType string `json:"PlatformType,omitempty"`
	PingStatus   string `json:"PingStatus"`
	ResourceType string `json:"ResourceType"`
}

// describeInstanceInformation lists the nodes matching Filters, as SSM does: every filter must
// hold (AND) and one of its values match (OR); tag filters ("tag:<name>", "tag-key") cannot be
// combined with other kinds; MaxResults is 5 to 50 (50 by default), and NextToken is the
// position of the next node.
func (s *Server) describeInstanceInformation(body []byte) (any, *apiError) {
	var req describeInstanceInformationRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.InstanceInformationFilterList) > 0 && len(req.Filters) > 0 {
		return nil, clientError("InvalidFilter", "InstanceInformationFilterList and Filters cannot be used together")
	}
	limit := 50
	if req.MaxResults != nil {
		if *req.MaxResults < 5 || *req.MaxResults > 50 {
			return nil, clientError("ValidationException", "MaxResults must be between 5 and 50")
		}
		limit = *req.MaxResults
	}
	tags, others := 0, 0
	for _, f := range req.Filters {
		if len(f.Values) == 0 || len(f.Values) > 100 {
			return nil, clientError("InvalidFilterValue", "filter %s needs 1 to 100 values", f.Key)
		}
		switch {
		case strings.HasPrefix(f.Key, "tag:") || f.Key == "tag-key":
			tags++
		case f.Key == "PingStatus" || f.Key == "InstanceIds" || f.Key == "PlatformTypes" || f.Key == "ResourceType":
			others++
		default:
			return nil, clientError("InvalidFilterKey", "unknown filter key %s", f.Key)
		}
	}
	if tags > 0 && others > 0 {
		return nil, clientError("InvalidFilter", "tag filters cannot be combined with other filter types")
	}
	start := 0
	if req.NextToken != "" {
		n, err := strconv.Atoi(req.NextToken)
		if err != nil || n < 0 {
			return nil, clientError("InvalidNextToken", "the token is not valid")
		}
		start = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []instanceInformationJSON
	next := ""
	for i := start; i < len(s.nodes); i++ {
		n := s.nodes[i]
		if !nodeMatches(n, req.Filters) {
			continue
		}
		if len(list) == limit {
			next = strconv.Itoa(i)
			break
		}
		kind := "EC2Instance"
		if strings.HasPrefix(n.ID, "mi-") {
			kind = "ManagedInstance"
		}
		list = append(list, instanceInformationJSON{InstanceId: n.ID, ComputerName: n.ComputerName,
			PlatformType: n.PlatformType, PingStatus: n.PingStatus, ResourceType: kind})
	}
	out := map[string]any{"InstanceInformationList": orEmptyList(list)}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

func orEmptyList(l []instanceInformationJSON) []instanceInformationJSON {
	if l == nil {
		return []instanceInformationJSON{}
	}
	return l
}

// nodeMatches applies DescribeInstanceInformation's filters to a node.
func nodeMatches(n Node, filters []instanceInformationFilter) bool {
	for _, f := range filters {
		var have []string
		switch {
		case strings.HasPrefix(f.Key, "tag:"):
			if v, ok := n.Tags[strings.TrimPrefix(f.Key, "tag:")]; ok {
				have = []string{v}
			}
		case f.Key == "tag-key":
			have = slices.Collect(maps.Keys(n.Tags))
		case f.Key == "PingStatus":
			have = []string{n.PingStatus}
		case f.Key == "InstanceIds":
			have = []string{n.ID}
		case f.Key == "PlatformTypes":
			have = []string{n.PlatformType}
		}
		if !slices.ContainsFunc(have, func(h string) bool { return slices.Contains(f.Values, h) }) {
			return false
		}
	}
	return true
}

type listTagsForResourceRequest struct {
	ResourceType string `json:"ResourceType"`
	ResourceId   string `json:"ResourceId"`
}

// listTagsForResource answers a managed node's tags, for ResourceType ManagedInstance (hybrid
// nodes, mi-…): SSM keeps no tags of EC2 instances, which EC2 holds.
func (s *Server) listTagsForResource(body []byte) (any, *apiError) {
	var req listTagsForResourceRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.ResourceType != "ManagedInstance" {
		return nil, clientError("InvalidResourceType", "ssmtest serves the tags of managed instances only, not %q", req.ResourceType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if n.ID == req.ResourceId {
			list := []map[string]string{}
			for _, k := range slices.Sorted(maps.Keys(n.Tags)) {
				list = append(list, map[string]string{"Key": k, "Value": n.Tags[k]})
			}
			return map[string]any{"TagList": list}, nil
		}
	}
	return nil, clientError("InvalidResourceId", "no managed instance %s", req.ResourceId)
}

// TagEC2Instances gives the EC2 instances among nodes (ids "i-…") their tags in EC2 (moto, in
// tests), where DescribeTags finds them: SSM reports the tags of hybrid nodes ("mi-…") only.
func TagEC2Instances(ctx context.Context, c *ec2.Client, nodes ...Node) error {
	for _, n := range nodes {
		if !strings.HasPrefix(n.ID, "i-") {
			continue
		}
		var tags []ec2types.Tag
		for k, v := range n.Tags {
			tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{n.ID}, Tags: tags}); err != nil {
			return fmt.Errorf("tag %s: %w", n.ID, err)
		}
	}
	return nil
}
