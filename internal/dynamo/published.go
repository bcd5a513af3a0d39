package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// MarkPublished implements task.Store with one UpdateItem conditioned on the task being in a
// terminal state; the version is left alone, since nothing a caller sees has changed.
func (s *Store) MarkPublished(ctx context.Context, id string) error {
	now := s.clock()
	err := s.call(ctx, "UpdateItem", func(ctx context.Context) error {
		_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:        aws.String(s.table),
			Key:              key(taskPK(id), skTask),
			UpdateExpression: aws.String("SET #published = :true"),
			ConditionExpression: aws.String("attribute_exists(#pk) AND #status IN (:completed, :failed, :timedOut, :cancelled)" +
				" AND (attribute_not_exists(#exp) OR #exp > :now)"),
			ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#status": attrStatus, "#exp": attrExp, "#published": "published"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":true": &types.AttributeValueMemberBOOL{Value: true}, ":now": num(now.UnixNano()),
				":completed": str(string(task.StatusCompleted)), ":failed": str(string(task.StatusFailed)),
				":timedOut": str(string(task.StatusTimedOut)), ":cancelled": str(string(task.StatusCancelled))},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		if failed.Item == nil || expired(itemExp(failed.Item), now) {
			return fmt.Errorf("dynamo: mark task %s published: %w", id, notFound("no task %s", id))
		}
		status := task.Status(itemString(failed.Item, attrStatus))
		return fmt.Errorf("dynamo: mark task %s published: %w", id, &task.Error{Code: task.CodeConflict, Status: status,
			Message: fmt.Sprintf("task %s is %s, not finished", id, status)})
	}
	if err != nil {
		return fmt.Errorf("dynamo: mark task %s published: %w", id, err)
	}
	return nil
}
