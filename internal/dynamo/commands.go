package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// commandTaskItem maps an SSM command id back to its task, for the progress function, which
// is told only the command id.
func commandTaskItem(commandID, taskID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: str(commandTaskPK(commandID)), attrSK: str(skCommandTask), attrType: str(kindCommandTask),
		"taskId": str(taskID), "commandId": str(commandID)}
}

// RecordCommand records that batch of task taskID was sent as SSM command commandID. SSM's
// SendCommand has no idempotency token, so a runner records each command right after sending
// it and, on a retried dispatch, reads Commands to skip the batches already sent.
//
// It writes, in one transaction, the task's batch → command item and the command → task
// mapping, each only if absent, with a check that the task exists. Recording the same pair
// again succeeds without writing. A batch that already has another command, or a command that
// already belongs to another batch or task, is CodeConflict; an unknown or expired task is
// CodeNotFound.
func (s *Store) RecordCommand(ctx context.Context, taskID string, batch int, commandID string) error {
	if commandID == "" || batch < 0 {
		return fmt.Errorf("dynamo: record command of task %s: %w", taskID,
			task.Errorf(task.CodeInvalid, "batch %d command %q: a batch number and a command id are required", batch, commandID))
	}
	absent := aws.String("attribute_not_exists(#pk)")
	names := map[string]string{"#pk": attrPK}
	actions := []types.TransactWriteItem{
		{ConditionCheck: &types.ConditionCheck{
			TableName:                 aws.String(s.table),
			Key:                       key(taskPK(taskID), skTask),
			ConditionExpression:       aws.String("attribute_exists(#pk) AND (attribute_not_exists(#exp) OR #exp > :now)"),
			ExpressionAttributeNames:  map[string]string{"#pk": attrPK, "#exp": attrExp},
			ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(s.clock().UnixNano())},
		}},
		{Put: &types.Put{
			TableName: aws.String(s.table),
			Item: map[string]types.AttributeValue{
				attrPK: str(taskPK(taskID)), attrSK: str(commandSK(batch)), attrType: str(kindCommand),
				"batch": num(int64(batch)), "commandId": str(commandID)},
			ConditionExpression: absent, ExpressionAttributeNames: names,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}},
		{Put: &types.Put{
			TableName: aws.String(s.table), Item: commandTaskItem(commandID, taskID),
			ConditionExpression: absent, ExpressionAttributeNames: names,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}},
	}
	for attempt := 0; ; attempt++ {
		err := s.call(ctx, "TransactWriteItems", func(ctx context.Context) error {
			_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: actions})
			return err
		})
		var cancelled *types.TransactionCanceledException
		if err == nil || !errors.As(err, &cancelled) {
			if err != nil {
				err = fmt.Errorf("dynamo: record command %s of task %s: %w", commandID, taskID, err)
			}
			return err
		}
		reasons := cancelled.CancellationReasons
		switch {
		case reasonCode(reasons, 0) == reasonConditionFailed:
			return fmt.Errorf("dynamo: record command %s: %w", commandID, notFound("no task %s", taskID))
		case reasonCode(reasons, 1) == reasonConditionFailed:
			if had := itemString(reasons[1].Item, "commandId"); had != commandID {
				return fmt.Errorf("dynamo: record command %s of task %s: %w", commandID, taskID,
					task.Errorf(task.CodeConflict, "batch %d of task %s was sent as command %s", batch, taskID, had))
			}
			return nil // recorded before; both items are always written together
		case reasonCode(reasons, 2) == reasonConditionFailed:
			return fmt.Errorf("dynamo: record command %s of task %s: %w", commandID, taskID,
				task.Errorf(task.CodeConflict, "command %s is already recorded for task %s", commandID,
					itemString(reasons[2].Item, "taskId")))
		case !anyReason(reasons, reasonConflict, reasonThrottled, reasonThroughput) || attempt+1 >= s.maxAttempts:
			return fmt.Errorf("dynamo: record command %s of task %s: %w", commandID, taskID, err)
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// Commands returns the commands recorded for a task's batches, batch number → command id.
// A task with none yet gives an empty map; an unknown or expired task is CodeNotFound.
func (s *Store) Commands(ctx context.Context, taskID string) (map[int]string, error) {
	items, err := s.queryAll(ctx, s.partitionQuery(taskID, prefixCommand))
	if err != nil {
		return nil, fmt.Errorf("dynamo: commands of task %s: %w", taskID, err)
	}
	now := s.clock()
	cmds := make(map[int]string, len(items))
	for _, item := range items {
		if expired(itemExp(item), now) {
			return nil, fmt.Errorf("dynamo: commands of task %s: %w", taskID, notFound("no task %s", taskID))
		}
		batch, err := strconv.Atoi(strings.TrimPrefix(itemString(item, attrSK), prefixCommand))
		if err != nil {
			return nil, fmt.Errorf("dynamo: commands of task %s: bad sort key %q", taskID, itemString(item, attrSK))
		}
		cmds[batch] = itemString(item, "commandId")
	}
	if len(cmds) == 0 {
		if _, err := s.readTask(ctx, taskID); err != nil {
			return nil, fmt.Errorf("dynamo: commands of task %s: %w", taskID, err)
		}
	}
	return cmds, nil
}

// TaskForCommand returns the id of the task that SSM command commandID belongs to, or
// CodeNotFound when no task recorded it (or that task has expired).
func (s *Store) TaskForCommand(ctx context.Context, commandID string) (string, error) {
	var item map[string]types.AttributeValue
	err := s.call(ctx, "GetItem", func(ctx context.Context) error {
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table),
			Key: key(commandTaskPK(commandID), skCommandTask), ConsistentRead: aws.Bool(true)})
		if err == nil {
			item = out.Item
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("dynamo: task for command %s: %w", commandID, err)
	}
	if item == nil || expired(itemExp(item), s.clock()) {
		return "", fmt.Errorf("dynamo: task for command %s: %w", commandID, notFound("no task has command %s", commandID))
	}
	return itemString(item, "taskId"), nil
}
