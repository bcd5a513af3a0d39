package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Cancellation reason codes of TransactionCanceledException.
const (
	reasonNone            = "None"
	reasonConditionFailed = "ConditionalCheckFailed"
	reasonConflict        = "TransactionConflict"
	reasonThrottled       = "ThrottlingError"
	reasonThroughput      = "ProvisionedThroughputExceeded"
)

func reasonCode(reasons []types.CancellationReason, i int) string {
	if i >= len(reasons) || reasons[i].Code == nil {
		return reasonNone
	}
	return *reasons[i].Code
}

func anyReason(reasons []types.CancellationReason, codes ...string) bool {
	for i := range reasons {
		for _, c := range codes {
			if reasonCode(reasons, i) == c {
				return true
			}
		}
	}
	return false
}

// CreateTask stores a new pending task and its idempotency record in one TransactWriteItems:
// a Put of the task conditioned on no task with its id, and a Put of the record conditioned
// on the key being unused or expired. A 10,000-device task is still those two actions (its
// device ids are compressed into the task item), and no device item is written.
//
// When the record's condition fails the earlier record decides: the same request hash returns
// the earlier task with created false, another hash is CodeIdempotencyMismatch, and a
// transaction conflict with a concurrent submit of the same key is CodeInProgress. A record
// whose task no longer lives (it expired, or TTL deleted it, before the key) frees the key, as
// in the embedded store: the record is replaced, on the condition that it still names the
// dead task, and the new task created. A task item cannot be missing because its write is
// still in flight: both items commit in one transaction, and GetItem is serializable with
// transactions. A transaction refused for throttling is tried again with backoff.
func (s *Store) CreateTask(ctx context.Context, t *task.Task, idem *task.IdempotencyRecord) (*task.Task, bool, error) {
	item, parts, err := encodeTask(t)
	if err != nil {
		return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID, err)
	}
	stored, err := decodeTask(item, parts)
	if err != nil {
		return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID, err)
	}
	now := s.clock()
	var idemPut *types.Put
	actions := []types.TransactWriteItem{{Put: &types.Put{
		TableName:                aws.String(s.table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK},
	}}}
	if idem != nil {
		exp, ttl := expiry(idem.ExpiresAt)
		rec, err := attributevalue.MarshalMap(idempotencyItem{
			PK: idemPK(idem.Owner, idem.Key), SK: skIdempotency, Type: kindIdempotency,
			Owner: idem.Owner, Key: idem.Key, TaskID: t.ID, RequestHash: idem.RequestHash,
			Exp: exp, TTL: ttl})
		if err != nil {
			return nil, false, fmt.Errorf("dynamo: create task %s: encode idempotency record: %w", t.ID, err)
		}
		actions = append(actions, types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table),
			Item:      rec,
			// An expired record is as good as none: TTL deletes it late.
			ConditionExpression:                 aws.String("attribute_not_exists(#pk) OR #exp <= :now"),
			ExpressionAttributeNames:            map[string]string{"#pk": attrPK, "#exp": attrExp},
			ExpressionAttributeValues:           map[string]types.AttributeValue{":now": num(now.UnixNano())},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}})
		idemPut = actions[len(actions)-1].Put
	}
	for i, p := range parts {
		actions = append(actions, types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table),
			Item: map[string]types.AttributeValue{
				attrPK: str(taskPK(t.ID)), attrSK: str(idsSK(i)), attrType: str(kindIDs),
				"data": &types.AttributeValueMemberB{Value: p}},
			ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
			ExpressionAttributeNames: map[string]string{"#pk": attrPK},
		}})
	}
	if t.RelaunchOf != "" {
		actions = append(actions, types.TransactWriteItem{Put: s.relaunchPut(t)})
	}
	for attempt := 0; ; attempt++ {
		err = s.call(ctx, "TransactWriteItems", func(ctx context.Context) error {
			_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: actions})
			return err
		})
		if err == nil {
			return stored, true, nil
		}
		var cancelled *types.TransactionCanceledException
		if !errors.As(err, &cancelled) {
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID, err)
		}
		reasons := cancelled.CancellationReasons
		switch {
		case idem != nil && reasonCode(reasons, 1) == reasonConditionFailed:
			earlier, dead, err := s.replay(ctx, idem, reasons[1].Item)
			if dead == "" {
				return earlier, false, err
			}
			if attempt+1 >= s.maxAttempts {
				return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID,
					task.Errorf(task.CodeInProgress, "the Idempotency-Key is changing hands; try again"))
			}
			// Take the key over from the dead task, unless someone else does first.
			idemPut.ConditionExpression = aws.String("attribute_not_exists(#pk) OR #exp <= :now OR #taskId = :dead")
			idemPut.ExpressionAttributeNames["#taskId"] = "taskId"
			idemPut.ExpressionAttributeValues[":dead"] = str(dead)
			continue
		case reasonCode(reasons, 0) == reasonConditionFailed:
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID,
				task.Errorf(task.CodeConflict, "a task with id %s already exists", t.ID))
		case idem != nil && anyReason(reasons, reasonConflict):
			// Only a concurrent submit with the same key writes these items at once.
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID,
				task.Errorf(task.CodeInProgress, "a request with the same Idempotency-Key is being processed; try again"))
		case !anyReason(reasons, reasonConflict, reasonThrottled, reasonThroughput):
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID, err)
		case attempt+1 >= s.maxAttempts:
			return nil, false, fmt.Errorf("dynamo: create task %s: %w: %w", t.ID,
				task.Errorf(task.CodeUnavailable, "the task store is overloaded; try again"), err)
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return nil, false, err
		}
	}
}

// relaunchPut is the write of the item that lists t among the relaunches of t.RelaunchOf, in
// that task's partition, so that its relaunches are one Query. It expires when t itself can
// expire at the latest (its longest run plus the retention and a day), and goes sooner with
// the partition of the task it relaunched. (A task runs at most MaxTimeoutSeconds once started;
// one that waits longer to start has its relaunch item go first, which listings tolerate.)
func (s *Store) relaunchPut(t *task.Task) *types.Put {
	item := map[string]types.AttributeValue{
		attrPK: str(taskPK(t.RelaunchOf)), attrSK: str(relaunchSK(t.CreatedAt, t.ID)), attrType: str(kindRelaunch),
		"taskId": str(t.ID)}
	if s.retention > 0 {
		bound := t.CreatedAt.Add(task.MaxTimeoutSeconds*time.Second + s.retention + 24*time.Hour)
		exp, ttl := expiry(bound)
		item[attrExp], item[attrTTL] = num(exp), num(ttl)
	}
	return &types.Put{TableName: aws.String(s.table), Item: item,
		ConditionExpression: aws.String("attribute_not_exists(#pk)"), ExpressionAttributeNames: map[string]string{"#pk": attrPK}}
}

// replay answers a submit whose Idempotency-Key is already taken, from the record that holds
// it (as returned by the failed condition, or read again when it was not). When the record
// matches but its task no longer lives, it returns that task's id as dead instead, so that the
// caller may take the key over.
func (s *Store) replay(ctx context.Context, idem *task.IdempotencyRecord, item map[string]types.AttributeValue) (earlier *task.Task, dead string, err error) {
	pk := idemPK(idem.Owner, idem.Key)
	if item == nil {
		err := s.call(ctx, "GetItem", func(ctx context.Context) error {
			out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table),
				Key: key(pk, skIdempotency), ConsistentRead: aws.Bool(true)})
			if err == nil {
				item = out.Item
			}
			return err
		})
		if err != nil {
			return nil, "", fmt.Errorf("dynamo: read idempotency record: %w", err)
		}
	}
	if item == nil {
		// The record went away between the write and the read (it expired and was deleted):
		// the caller's retry will find the key free.
		return nil, "", fmt.Errorf("dynamo: idempotency record: %w",
			task.Errorf(task.CodeInProgress, "the Idempotency-Key is changing hands; try again"))
	}
	var rec idempotencyItem
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return nil, "", fmt.Errorf("dynamo: decode idempotency record: %w", err)
	}
	if rec.RequestHash != idem.RequestHash {
		return nil, "", fmt.Errorf("dynamo: idempotency record for task %s: %w", rec.TaskID,
			task.Errorf(task.CodeIdempotencyMismatch, "the Idempotency-Key was used with a different request"))
	}
	t, err := s.GetTask(ctx, rec.TaskID)
	if task.IsCode(err, task.CodeNotFound) {
		return nil, rec.TaskID, err
	}
	if err != nil {
		return nil, "", err
	}
	return t, "", nil
}
