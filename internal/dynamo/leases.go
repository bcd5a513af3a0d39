package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Due returns the ids of at most limit unfinished tasks whose lease is at or before now, the
// longest overdue first (engine.Leases). It is one Query of one Query of IndexOpen (gsi2): the unfinished tasks are
// the only items with gsi2 keys, under the single key "OPEN", sorted by lease, so the tasks
// whose lease is at or before now are the start of that key's range. A healthy table has none,
// and the Query reads nothing but its own page: the sweep's cost does not grow with the number
// of tasks in flight. The index is eventually consistent; a task renewed a moment ago may still
// show as due, which the sweep checks against the task itself.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.table),
		IndexName:                aws.String(IndexOpen),
		KeyConditionExpression:   aws.String("#pk = :open AND #sk < :after"),
		ExpressionAttributeNames: map[string]string{"#pk": attrGSI2PK, "#sk": attrGSI2SK},
		// "$" sorts just after "#", the separator of lease and id: every task whose lease is
		// at or before now sorts before now's key followed by "$".
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":open": str(openPK), ":after": str(now.UTC().Format(sortTimeLayout) + "$")},
		ScanIndexForward: aws.Bool(true),
		Limit:            aws.Int32(int32(max(limit, 1))),
	}
	var out *dynamodb.QueryOutput
	err := s.call(ctx, "Query", func(ctx context.Context) (err error) {
		out, err = s.db.Query(ctx, in)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dynamo: tasks due at %s: %w", now.UTC().Format(time.RFC3339), err)
	}
	ids := make([]string, 0, len(out.Items))
	for _, item := range out.Items {
		if _, id, ok := strings.Cut(itemString(item, attrGSI2SK), "#"); ok && id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Renew moves the lease of task id from prev to next (engine.Leases), with one UpdateItem conditioned on the task not having
// finished and still having lease prev (no lease at all for a zero prev), which puts the task
// in IndexOpen under next.
func (s *Store) Renew(ctx context.Context, id string, prev, next time.Time) error {
	names := map[string]string{"#pk": attrPK, "#status": attrStatus, "#lease": attrLease,
		"#gpk": attrGSI2PK, "#gsk": attrGSI2SK}
	values := map[string]types.AttributeValue{":open": str(openPK), ":sk": str(leaseSK(next, id)),
		":next": num(next.UnixNano())}
	for k, v := range terminalValues {
		values[k] = v
	}
	held := "attribute_not_exists(#lease)"
	if !prev.IsZero() {
		held = "#lease = :prev"
		values[":prev"] = num(prev.UnixNano())
	}
	err := s.call(ctx, "UpdateItem", func(ctx context.Context) error {
		_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           aws.String(s.table),
			Key:                                 key(taskPK(id), skTask),
			UpdateExpression:                    aws.String("SET #lease = :next, #gpk = :open, #gsk = :sk"),
			ConditionExpression:                 aws.String("attribute_exists(#pk) AND NOT (#status IN (:completed, :failed, :timedOut, :cancelled)) AND " + held),
			ExpressionAttributeNames:            names,
			ExpressionAttributeValues:           values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	})
	var failed *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &failed) && failed.Item == nil:
		return fmt.Errorf("dynamo: renew the lease of %s: %w", id, notFound("no task %s", id))
	case errors.As(err, &failed):
		return fmt.Errorf("dynamo: renew the lease of %s: %w", id,
			task.Errorf(task.CodeConflict, "the task is %s with another lease", itemString(failed.Item, attrStatus)))
	case err != nil:
		return fmt.Errorf("dynamo: renew the lease of %s: %w", id, err)
	}
	return nil
}
