package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// tableOnlyProperties are AWS::DynamoDB::Table properties that CreateTable does not take:
// they are separate calls, or settings an emulator has no use for.
var tableOnlyProperties = []string{"TimeToLiveSpecification", "PointInTimeRecoverySpecification",
	"SSESpecification", "Tags", "DeletionProtectionEnabled"}

// CreateTableInput translates an AWS::DynamoDB::Table resource into the CreateTable call that
// makes the same table, named name. A property it does not know is an error, so a template
// change the tests cannot follow fails loudly instead of being skipped.
func CreateTableInput(r Resource, name string, refs map[string]string) (*dynamodb.CreateTableInput, error) {
	props := maps.Clone(r.Properties)
	for _, k := range tableOnlyProperties {
		delete(props, k)
	}
	var in dynamodb.CreateTableInput
	if err := decodeStrict(props, refs, &in); err != nil {
		return nil, fmt.Errorf("lambdatest: table properties: %w", err)
	}
	in.TableName = aws.String(name)
	return &in, nil
}

// QueueAttributes translates an AWS::SQS::Queue resource's properties into CreateQueue's
// attributes: CloudFormation names them alike, and passes objects (RedrivePolicy) as JSON.
func QueueAttributes(r Resource, refs map[string]string) (map[string]string, error) {
	attrs := map[string]string{}
	for k, v := range r.Properties {
		if k == "QueueName" || k == "Tags" {
			continue
		}
		resolved, err := Resolve(v, refs)
		if err != nil {
			return nil, fmt.Errorf("lambdatest: queue property %s: %w", k, err)
		}
		switch resolved.(type) {
		case map[string]any, []any:
			b, err := json.Marshal(resolved)
			if err != nil {
				return nil, err
			}
			attrs[k] = string(b)
		default:
			if attrs[k], err = ResolveString(resolved, nil); err != nil {
				return nil, fmt.Errorf("lambdatest: queue property %s: %w", k, err)
			}
		}
	}
	return attrs, nil
}

// Stack is what Deploy created, as the Ref and GetAtt values the template's intrinsics resolve
// to: Refs["Queue"] is the queue's URL, Refs["Queue.Arn"] its ARN, and so on.
type Stack struct {
	Name string
	Refs map[string]string
}

// Deploy creates on the endpoints of sdk (moto) the table, the queues, the event bus and the
// rules on it that tpl defines, from their own properties, in the order their references
// need. params override the parameters' defaults. Resources of other types (functions, the
// API, roles, alarms, rules on the default bus that target functions) are not created: the
// tests run the functions themselves.
func Deploy(ctx context.Context, sdk aws.Config, tpl *Template, name string, params map[string]string) (*Stack, error) {
	s := &Stack{Name: name, Refs: map[string]string{"AWS::StackName": name, "AWS::Region": sdk.Region}}
	for k, p := range tpl.Parameters {
		if v, ok := params[k]; ok {
			s.Refs[k] = v
		} else if p.Default != nil {
			s.Refs[k], _ = ResolveString(p.Default, nil)
		}
	}
	creatable := map[string]bool{"AWS::SQS::Queue": true, "AWS::DynamoDB::Table": true,
		"AWS::Events::EventBus": true, "AWS::Events::Rule": true, "AWS::S3::Bucket": true}
	var pending []string
	for _, id := range slices.Sorted(maps.Keys(tpl.Resources)) {
		r := tpl.Resources[id]
		// Rules on the default bus target functions, which the tests run themselves.
		if creatable[r.Type] && (r.Type != "AWS::Events::Rule" || r.Properties["EventBusName"] != nil) {
			pending = append(pending, id)
		}
	}
	sq, db, eb, s3c := sqs.NewFromConfig(sdk), dynamodb.NewFromConfig(sdk), eventbridge.NewFromConfig(sdk), s3.NewFromConfig(sdk)
	// Each round creates what refers only to resources already created (a queue's redrive
	// policy names its dead-letter queue, a rule its bus and target).
	for len(pending) > 0 {
		var next []string
		for _, id := range pending {
			r := tpl.Resources[id]
			if slices.ContainsFunc(pending, func(other string) bool { return other != id && refersTo(r, other) }) {
				next = append(next, id)
				continue
			}
			var err error
			switch r.Type {
			case "AWS::SQS::Queue":
				err = s.queue(ctx, sq, id, r)
			case "AWS::DynamoDB::Table":
				err = s.table(ctx, db, id, r)
			case "AWS::Events::EventBus":
				err = s.bus(ctx, eb, id, r)
			case "AWS::Events::Rule":
				err = s.rule(ctx, eb, id, r)
			case "AWS::S3::Bucket":
				err = s.bucket(ctx, s3c, id, r)
			}
			if err != nil {
				return nil, fmt.Errorf("lambdatest: deploy %s (%s): %w", id, r.Type, err)
			}
		}
		if len(next) == len(pending) {
			return nil, fmt.Errorf("lambdatest: deploy: circular references among %v", pending)
		}
		pending = next
	}
	return s, nil
}

func (s *Stack) queue(ctx context.Context, c *sqs.Client, id string, r Resource) error {
	attrs, err := QueueAttributes(r, s.Refs)
	if err != nil {
		return err
	}
	name := s.Name + "-" + id
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return err
	}
	got, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return err
	}
	s.Refs[id] = aws.ToString(out.QueueUrl)
	s.Refs[id+".Arn"] = got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	s.Refs[id+".QueueName"] = name
	s.Refs[id+".QueueUrl"] = aws.ToString(out.QueueUrl)
	return nil
}

func (s *Stack) table(ctx context.Context, c *dynamodb.Client, id string, r Resource) error {
	name := s.Name + "-" + id
	in, err := CreateTableInput(r, name, s.Refs)
	if err != nil {
		return err
	}
	out, err := c.CreateTable(ctx, in)
	if err != nil {
		return err
	}
	if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, 30*time.Second); err != nil {
		return err
	}
	if spec, ok := r.Properties["TimeToLiveSpecification"]; ok {
		var ttl ddbtypes.TimeToLiveSpecification
		if err := decodeStrict(spec, s.Refs, &ttl); err != nil {
			return err
		}
		if _, err := c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: in.TableName, TimeToLiveSpecification: &ttl}); err != nil {
			return err
		}
	}
	s.Refs[id] = name
	s.Refs[id+".Arn"] = aws.ToString(out.TableDescription.TableArn)
	return nil
}

func (s *Stack) bus(ctx context.Context, c *eventbridge.Client, id string, r Resource) error {
	name, err := ResolveString(r.Properties["Name"], s.Refs)
	if err != nil {
		return err
	}
	out, err := c.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
	if err != nil {
		return err
	}
	s.Refs[id] = name
	s.Refs[id+".Arn"] = aws.ToString(out.EventBusArn)
	s.Refs[id+".Name"] = name
	return nil
}

func (s *Stack) rule(ctx context.Context, c *eventbridge.Client, id string, r Resource) error {
	props, err := Resolve(r.Properties, s.Refs)
	if err != nil {
		return err
	}
	p := props.(map[string]any)
	pattern, err := json.Marshal(p["EventPattern"])
	if err != nil {
		return err
	}
	name := s.Name + "-" + id
	bus, _ := p["EventBusName"].(string)
	in := &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(bus), EventPattern: aws.String(string(pattern))}
	if state, ok := p["State"].(string); ok {
		in.State = ebtypes.RuleState(state)
	}
	if d, ok := p["Description"].(string); ok {
		in.Description = aws.String(d)
	}
	out, err := c.PutRule(ctx, in)
	if err != nil {
		return err
	}
	var targets []ebtypes.Target
	if err := decodeStrict(p["Targets"], nil, &targets); err != nil {
		return err
	}
	if len(targets) > 0 {
		res, err := c.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(bus), Targets: targets})
		if err != nil {
			return err
		}
		if res.FailedEntryCount > 0 {
			return fmt.Errorf("put targets of %s: %d failed", name, res.FailedEntryCount)
		}
	}
	s.Refs[id] = name
	s.Refs[id+".Arn"] = aws.ToString(out.RuleArn)
	return nil
}

// bucketRule is the part of an AWS::S3::Bucket lifecycle rule that Deploy translates.
// Numbers may come as strings, from a Ref to a parameter.
type bucketRule struct {
	ID                             string `json:"Id"`
	Status                         string
	ExpirationInDays               json.Number
	AbortIncompleteMultipartUpload struct{ DaysAfterInitiation json.Number }
}

// bucket creates an AWS::S3::Bucket with its encryption, public access block, ownership
// controls and lifecycle rules, each through the call S3 takes it with. Other properties are
// an error.
func (s *Stack) bucket(ctx context.Context, c *s3.Client, id string, r Resource) error {
	name := strings.ToLower(s.Name + "-" + id)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(r.Properties)) {
		v := r.Properties[k]
		var err error
		switch k {
		case "BucketEncryption":
			// CloudFormation names the API's ApplyServerSideEncryptionByDefault differently.
			var rules []struct {
				ServerSideEncryptionByDefault s3types.ServerSideEncryptionByDefault
			}
			if err = decodeStrict(dig(v, "ServerSideEncryptionConfiguration"), s.Refs, &rules); err == nil {
				var enc s3types.ServerSideEncryptionConfiguration
				for _, r := range rules {
					enc.Rules = append(enc.Rules, s3types.ServerSideEncryptionRule{ApplyServerSideEncryptionByDefault: &r.ServerSideEncryptionByDefault})
				}
				_, err = c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(name), ServerSideEncryptionConfiguration: &enc})
			}
		case "PublicAccessBlockConfiguration":
			var block s3types.PublicAccessBlockConfiguration
			if err = decodeStrict(v, s.Refs, &block); err == nil {
				_, err = c.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(name), PublicAccessBlockConfiguration: &block})
			}
		case "OwnershipControls":
			var own s3types.OwnershipControls
			if err = decodeStrict(v, s.Refs, &own); err == nil {
				_, err = c.PutBucketOwnershipControls(ctx, &s3.PutBucketOwnershipControlsInput{Bucket: aws.String(name), OwnershipControls: &own})
			}
		case "LifecycleConfiguration":
			var rules []bucketRule
			if err = decodeStrict(dig(v, "Rules"), s.Refs, &rules); err != nil {
				break
			}
			var cfg s3types.BucketLifecycleConfiguration
			for _, rule := range rules {
				expire, _ := rule.ExpirationInDays.Int64()
				abort, _ := rule.AbortIncompleteMultipartUpload.DaysAfterInitiation.Int64()
				cfg.Rules = append(cfg.Rules, s3types.LifecycleRule{ID: aws.String(rule.ID), Status: s3types.ExpirationStatus(rule.Status),
					Filter:                         &s3types.LifecycleRuleFilter{Prefix: aws.String("")},
					Expiration:                     &s3types.LifecycleExpiration{Days: aws.Int32(int32(expire))},
					AbortIncompleteMultipartUpload: &s3types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(int32(abort))}})
			}
			_, err = c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: aws.String(name), LifecycleConfiguration: &cfg})
		default:
			err = fmt.Errorf("the tests do not create buckets with %s", k)
		}
		if err != nil {
			return fmt.Errorf("bucket property %s: %w", k, err)
		}
	}
	s.Refs[id] = name
	s.Refs[id+".Arn"] = "arn:aws:s3:::" + name
	return nil
}

// decodeStrict resolves v and decodes it into out through JSON, refusing fields out does not
// have.
func decodeStrict(v any, refs map[string]string, out any) error {
	resolved, err := Resolve(v, refs)
	if err != nil {
		return err
	}
	b, err := json.Marshal(resolved)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

// refersTo reports whether r mentions resource id through Ref or GetAtt.
func refersTo(r Resource, id string) bool {
	found := false
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["Ref"].(string); ok && ref == id {
				found = true
			}
			if ga, ok := v["Fn::GetAtt"].([]any); ok && len(ga) == 2 && ga[0] == id {
				found = true
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(r.Properties)
	return found
}
