package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute and index names of the table. The package documentation describes the schema.
const (
	attrPK      = "pk"
	attrSK      = "sk"
	attrType    = "type"
	attrGSI1PK  = "gsi1pk"
	attrGSI1SK  = "gsi1sk"
	attrGSI2PK  = "gsi2pk"
	attrGSI2SK  = "gsi2sk"
	attrLease   = "lease"
	attrTTL     = "ttl"
	attrExp     = "exp"
	attrStatus  = "status"
	attrVersion = "version"

	// IndexByOwner is the global secondary index that lists an owner's tasks newest first.
	IndexByOwner = "gsi1"
	// IndexOpen is the sparse global secondary index of unfinished tasks by lease, which the
	// sweep queries for the tasks whose lease ran out.
	IndexOpen = "gsi2"
	// TTLAttribute is the attribute DynamoDB's time to live must be enabled on.
	TTLAttribute = attrTTL
)

// Item kinds, stored in the "type" attribute.
const (
	kindTask        = "task"
	kindDevice      = "device"
	kindCommand     = "command"
	kindIDs         = "ids"
	kindCommandTask = "commandTask"
	kindIdempotency = "idempotency"
	kindRelaunch    = "relaunch"
	kindDelivery    = "delivery"
)

// Sort keys and key prefixes.
const (
	skTask         = "TASK"
	skIdempotency  = "IDEM"
	skCommandTask  = "COMMAND"
	prefixTask     = "TASK#"
	prefixDevice   = "DEVICE#"
	prefixCommand  = "COMMAND#"
	prefixIDs      = "IDS#"
	prefixOwner    = "OWNER#"
	prefixIdem     = "IDEM#"
	prefixRelaunch = "RELAUNCH#"
	openPK         = "OPEN"
	prefixDelivery = "HOOK#"
	sortTimeLayout = "2006-01-02T15:04:05.000000000Z"
)

func taskPK(id string) string               { return prefixTask + id }
func deviceSK(deviceID string) string       { return prefixDevice + deviceID }
func commandSK(batch int) string            { return fmt.Sprintf("%s%06d", prefixCommand, batch) }
func idsSK(n int) string                    { return fmt.Sprintf("%s%03d", prefixIDs, n) }
func commandTaskPK(commandID string) string { return prefixCommand + commandID }
func ownerPK(owner string) string           { return prefixOwner + owner }

// relaunchSK is the sort key, in the partition of the task it relaunched, of the item that
// lists task id among that task's relaunches, newest last.
func relaunchSK(createdAt time.Time, id string) string {
	return prefixRelaunch + ownerSK(createdAt, id)
}

// ownerSK orders an owner's tasks by creation time, then id, at a fixed width so that the
// string order is the time order.
func ownerSK(createdAt time.Time, id string) string {
	return createdAt.UTC().Format(sortTimeLayout) + "#" + id
}

// leaseSK orders the unfinished tasks by lease, then id, at a fixed width.
func leaseSK(lease time.Time, id string) string {
	return lease.UTC().Format(sortTimeLayout) + "#" + id
}

// idemPK hashes the owner and key so that neither can forge the other's boundary and the key
// stays well under DynamoDB's key size whatever the owner's ARN looks like.
func idemPK(owner, key string) string {
	h := sha256.New()
	h.Write([]byte(owner))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return prefixIdem + hex.EncodeToString(h.Sum(nil))
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: pk},
		attrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

// CreateTableInput describes the table the store needs. The SAM template defines the same
// keys, index and billing mode; time to live is enabled separately (EnsureTable does it here,
// TimeToLiveSpecification in the template).
func CreateTableInput(table string) *dynamodb.CreateTableInput {
	str := types.ScalarAttributeTypeS
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: str},
			{AttributeName: aws.String(attrSK), AttributeType: str},
			{AttributeName: aws.String(attrGSI1PK), AttributeType: str},
			{AttributeName: aws.String(attrGSI1SK), AttributeType: str},
			{AttributeName: aws.String(attrGSI2PK), AttributeType: str},
			{AttributeName: aws.String(attrGSI2SK), AttributeType: str},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(IndexByOwner),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrGSI1PK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(attrGSI1SK), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}, {
			IndexName: aws.String(IndexOpen),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrGSI2PK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(attrGSI2SK), KeyType: types.KeyTypeRange},
			},
			// The sweep needs only the ids of the tasks that are due; it reads each task itself.
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
	}
}

// EnsureTable creates the table if it does not exist, waits until it is ACTIVE and enables
// time to live on TTLAttribute. It is for tests and local use; on AWS the SAM template owns
// the table.
func EnsureTable(ctx context.Context, client *dynamodb.Client, table string) error {
	_, err := client.CreateTable(ctx, CreateTableInput(table))
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamo: create table %s: %w", table, err)
	}
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("dynamo: wait for table %s: %w", table, err)
	}
	ttl, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("dynamo: describe time to live of %s: %w", table, err)
	}
	if d := ttl.TimeToLiveDescription; d != nil && d.TimeToLiveStatus == types.TimeToLiveStatusEnabled {
		return nil
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(TTLAttribute), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("dynamo: enable time to live on %s: %w", table, err)
	}
	return nil
}
