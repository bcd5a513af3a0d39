package dynamo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// stampExpiry gives every other item of a finished task (devices, commands, device id parts)
// and the task's command mappings the task's expiry, so that TTL deletes them with it. Device
// items written with an expiry that already outlasts the task's are left as they are. No
// other writer touches these items once the task is terminal: device writes are conditioned
// on the task not being terminal.
func (s *Store) stampExpiry(ctx context.Context, taskID string, at time.Time) error {
	exp, ttl := expiry(at)
	items, err := s.queryAll(ctx, s.partitionQuery(taskID, ""))
	if err != nil {
		return err
	}
	var writes []types.WriteRequest
	put := func(item map[string]types.AttributeValue) {
		item[attrExp], item[attrTTL] = num(exp), num(ttl)
		writes = append(writes, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	for _, item := range items {
		if itemString(item, attrSK) == skTask {
			continue
		}
		if itemString(item, attrType) == kindDevice && itemExp(item) >= exp {
			continue // written with a bound that already outlasts the task (Options.Retention)
		}
		if itemString(item, attrType) == kindCommand {
			put(commandTaskItem(itemString(item, "commandId"), taskID))
		}
		put(item)
	}
	return s.batchWrite(ctx, writes)
}

// DeleteExpired removes what has expired by now: every task item past its expiry with its
// whole partition (devices, commands, device id parts) and its command mappings, and every
// other item past its own expiry (idempotency records, stamped items whose task is gone). It
// scans the table, so it is for emulators, which never run TTL, and tests; on AWS, DynamoDB's
// TTL on the "ttl" attribute does this. It returns how many tasks it removed.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	names := map[string]string{"#pk": attrPK, "#sk": attrSK, "#type": attrType, "#exp": attrExp, "#cmd": "commandId"}
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(s.table),
		ConsistentRead:            aws.Bool(true),
		FilterExpression:          aws.String("#exp <= :now"),
		ProjectionExpression:      aws.String("#pk, #sk, #type, #cmd"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(now.UnixNano())},
	}
	doomed := map[itemKey]bool{}
	mark := func(item map[string]types.AttributeValue) {
		doomed[keyOf(item)] = true
		if itemString(item, attrType) == kindCommand {
			doomed[itemKey{commandTaskPK(itemString(item, "commandId")), skCommandTask}] = true
		}
	}
	var tasks []string
	for {
		var out *dynamodb.ScanOutput
		err := s.call(ctx, "Scan", func(ctx context.Context) (err error) {
			out, err = s.db.Scan(ctx, in)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("dynamo: delete expired: %w", err)
		}
		for _, item := range out.Items {
			mark(item)
			if itemString(item, attrType) == kindTask {
				tasks = append(tasks, strings.TrimPrefix(itemString(item, attrPK), prefixTask))
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	for _, id := range tasks {
		q := s.partitionQuery(id, "")
		q.ProjectionExpression = aws.String("#pk, #sk, #type, #cmd")
		q.ExpressionAttributeNames = map[string]string{"#pk": attrPK, "#sk": attrSK, "#type": attrType, "#cmd": "commandId"}
		items, err := s.queryAll(ctx, q)
		if err != nil {
			return 0, fmt.Errorf("dynamo: delete expired task %s: %w", id, err)
		}
		for _, item := range items {
			mark(item)
		}
	}
	writes := make([]types.WriteRequest, 0, len(doomed))
	for k := range doomed {
		writes = append(writes, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(k.pk, k.sk)}})
	}
	if err := s.batchWrite(ctx, writes); err != nil {
		return 0, fmt.Errorf("dynamo: delete expired: %w", err)
	}
	return len(tasks), nil
}
