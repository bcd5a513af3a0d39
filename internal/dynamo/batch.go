package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/fleetrun/fleetrun/internal/task"
)

// DynamoDB's request limits.
const (
	batchGetMax    = 100
	batchWriteMax  = 25
	transactMax    = 100
	transactBudget = 3 << 20 // of the 4 MB a transaction may carry, with room for overhead
)

// itemKey identifies an item by its primary key.
type itemKey struct{ pk, sk string }

func keyOf(item map[string]types.AttributeValue) itemKey {
	return itemKey{itemString(item, attrPK), itemString(item, attrSK)}
}

// batchGet reads the items with keys, strongly consistent, 100 to a request, and returns those
// that exist. Keys DynamoDB leaves unprocessed (under load) are asked for again with backoff.
func (s *Store) batchGet(ctx context.Context, keys []itemKey) (map[itemKey]map[string]types.AttributeValue, error) {
	found := make(map[itemKey]map[string]types.AttributeValue, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), batchGetMax)
		req := make([]map[string]types.AttributeValue, 0, n)
		for _, k := range keys[:n] {
			req = append(req, key(k.pk, k.sk))
		}
		keys = keys[n:]
		for attempt := 0; len(req) > 0; attempt++ {
			var out *dynamodb.BatchGetItemOutput
			err := s.call(ctx, "BatchGetItem", func(ctx context.Context) (err error) {
				out, err = s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
					s.table: {Keys: req, ConsistentRead: aws.Bool(true)}}})
				return err
			})
			if err != nil {
				return nil, err
			}
			for _, item := range out.Responses[s.table] {
				found[keyOf(item)] = item
			}
			req = out.UnprocessedKeys[s.table].Keys
			if len(req) == 0 {
				break
			}
			if attempt+1 >= s.maxAttempts {
				return nil, task.Errorf(task.CodeUnavailable, "the task store left %d reads unprocessed; try again", len(req))
			}
			if err := s.backoff(ctx, attempt); err != nil {
				return nil, err
			}
		}
	}
	return found, nil
}

// batchWrite runs the write requests 25 to a request, asking again with backoff for the ones
// DynamoDB leaves unprocessed. The writes are unconditional: it is used only where no other
// writer can touch the items (expiry stamping of a finished task, deletion of expired items).
func (s *Store) batchWrite(ctx context.Context, writes []types.WriteRequest) error {
	for len(writes) > 0 {
		n := min(len(writes), batchWriteMax)
		req := writes[:n]
		writes = writes[n:]
		for attempt := 0; len(req) > 0; attempt++ {
			var out *dynamodb.BatchWriteItemOutput
			err := s.call(ctx, "BatchWriteItem", func(ctx context.Context) (err error) {
				out, err = s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
					RequestItems: map[string][]types.WriteRequest{s.table: req}})
				return err
			})
			if err != nil {
				return err
			}
			req = out.UnprocessedItems[s.table]
			if len(req) == 0 {
				break
			}
			if attempt+1 >= s.maxAttempts {
				return task.Errorf(task.CodeUnavailable, "the task store left %d writes unprocessed; try again", len(req))
			}
			if err := s.backoff(ctx, attempt); err != nil {
				return err
			}
		}
	}
	return nil
}

// queryAll runs a query to its end, page by page, and returns every item.
func (s *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	for {
		var out *dynamodb.QueryOutput
		err := s.call(ctx, "Query", func(ctx context.Context) (err error) {
			out, err = s.db.Query(ctx, in)
			return err
		})
		if err != nil {
			return nil, err
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 {
			return items, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// partitionQuery selects the items of a task's partition whose sort key begins with prefix.
// An empty prefix selects the whole partition.
func (s *Store) partitionQuery(taskID, prefix string) *dynamodb.QueryInput {
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("#pk = :pk"),
		ExpressionAttributeNames:  map[string]string{"#pk": attrPK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(taskPK(taskID))},
	}
	if prefix != "" {
		in.KeyConditionExpression = aws.String("#pk = :pk AND begins_with(#sk, :prefix)")
		in.ExpressionAttributeNames["#sk"] = attrSK
		in.ExpressionAttributeValues[":prefix"] = str(prefix)
	}
	return in
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: fmt.Sprint(n)}
}
