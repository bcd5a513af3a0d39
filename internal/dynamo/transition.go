package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Transition writes a status change the state machine allows (tr.Check) with one UpdateItem
// conditioned on the task existing, not having expired, and still being in tr.From at
// tr.Version. A transition that ends the task writes the counts task.End computed, which the
// version condition keeps exact. When the condition fails the
// item as it was comes back with the error (ReturnValuesOnConditionCheckFailure), which tells
// a missing or expired task (CodeNotFound) from one that moved on (CodeConflict, with its
// current status).
//
// A transition into a terminal state with an ExpiresAt then stamps the task's command items
// (and any device item that was not written with a bound outlasting the task, see
// Options.Retention) with the same expiry, so DynamoDB's TTL removes them with the task. That
// stamping is best effort: the task is already written, a failure is logged, and reads never
// show the devices of an expired task anyway.
func (s *Store) Transition(ctx context.Context, tr task.Transition) (*task.Task, error) {
	if err := tr.Check(); err != nil {
		return nil, fmt.Errorf("dynamo: transition: %w", err)
	}
	now := s.clock()
	at := tr.At
	if at.IsZero() {
		at = now
	}
	names := map[string]string{"#pk": attrPK, "#status": attrStatus, "#version": attrVersion,
		"#exp": attrExp, "#updatedAt": "updatedAt"}
	values := map[string]types.AttributeValue{
		":from": str(string(tr.From)), ":to": str(string(tr.To)), ":ver": num(tr.Version),
		":next": num(tr.Version + 1), ":at": str(formatTime(at)), ":now": num(now.UnixNano())}
	sets := []string{"#status = :to", "#version = :next", "#updatedAt = :at"}
	var removes []string
	if tr.Starts() {
		names["#startedAt"] = "startedAt"
		sets = append(sets, "#startedAt = if_not_exists(#startedAt, :at)")
	}
	if tr.Ends() {
		names["#completedAt"] = "completedAt"
		sets = append(sets, "#completedAt = if_not_exists(#completedAt, :at)")
		for _, d := range task.DeviceStatuses() {
			names["#c_"+string(d)], values[":c_"+string(d)] = counterAttr(d), num(int64(tr.Counts.Of(d)))
			sets = append(sets, fmt.Sprintf("#c_%s = :c_%s", d, d))
		}
		// A finished task leaves the index of unfinished ones: the sweep is done with it.
		names["#gsi2pk"], names["#gsi2sk"], names["#lease"] = attrGSI2PK, attrGSI2SK, attrLease
		removes = append(removes, "#gsi2pk", "#gsi2sk", "#lease")
		if !tr.ExpiresAt.IsZero() {
			exp, ttl := expiry(tr.ExpiresAt)
			names["#ttl"] = attrTTL
			values[":exp"], values[":ttl"] = num(exp), num(ttl)
			sets = append(sets, "#exp = :exp", "#ttl = :ttl")
		}
	}
	if tr.Step != "" {
		names["#step"] = "step"
		values[":step"] = str(tr.Step)
		sets = append(sets, "#step = :step")
	}
	if tr.Ends() && tr.Result != nil {
		blob, err := encodeResult(tr.Result)
		if err != nil {
			return nil, fmt.Errorf("dynamo: transition task %s: encode result: %w", tr.TaskID, err)
		}
		names["#result"] = "result"
		values[":result"] = &types.AttributeValueMemberB{Value: blob}
		sets = append(sets, "#result = :result")
	}
	var out *dynamodb.UpdateItemOutput
	err := s.call(ctx, "UpdateItem", func(ctx context.Context) (err error) {
		out, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           aws.String(s.table),
			Key:                                 key(taskPK(tr.TaskID), skTask),
			UpdateExpression:                    aws.String(updateExpression(sets, removes)),
			ConditionExpression:                 aws.String("attribute_exists(#pk) AND #status = :from AND #version = :ver AND (attribute_not_exists(#exp) OR #exp > :now)"),
			ExpressionAttributeNames:            names,
			ExpressionAttributeValues:           values,
			ReturnValues:                        types.ReturnValueAllNew,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return nil, fmt.Errorf("dynamo: transition task %s: %w", tr.TaskID, s.refused(tr, failed.Item, now))
	}
	if err != nil {
		return nil, fmt.Errorf("dynamo: transition task %s: %w", tr.TaskID, err)
	}
	t, err := s.decodeTaskItem(ctx, out.Attributes)
	if err != nil {
		return nil, fmt.Errorf("dynamo: transition task %s: %w", tr.TaskID, err)
	}
	if tr.Ends() && !t.ExpiresAt.IsZero() {
		if err := s.stampExpiry(ctx, t.ID, t.ExpiresAt); err != nil {
			s.log.WarnContext(ctx, "stamping the expiry of a finished task's items failed; they stay until DeleteExpired",
				"task_id", t.ID, "err", err)
		}
	}
	return t, nil
}

// refused explains a failed transition from the item as it was before.
func (s *Store) refused(tr task.Transition, old map[string]types.AttributeValue, now time.Time) error {
	if old == nil || expired(itemExp(old), now) {
		return notFound("no task %s", tr.TaskID)
	}
	var cur struct {
		Status  string `dynamodbav:"status"`
		Version int64  `dynamodbav:"version"`
	}
	if err := attributevalue.UnmarshalMap(old, &cur); err != nil {
		return fmt.Errorf("decode task item: %w", err)
	}
	return &task.Error{Code: task.CodeConflict, Status: task.Status(cur.Status),
		Message: fmt.Sprintf("the task is %s at version %d, not %s at version %d", cur.Status, cur.Version, tr.From, tr.Version)}
}

// updateExpression joins SET and REMOVE clauses.
func updateExpression(sets, removes []string) string {
	expr := "SET " + strings.Join(sets, ", ")
	if len(removes) > 0 {
		expr += " REMOVE " + strings.Join(removes, ", ")
	}
	return expr
}
