package dynamo

import (
	"context"
	"errors"
	"fmt"

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
// the earlier task with created false, another hash is ErrIdempotencyMismatch, and a record
// whose task cannot be read yet, or a transaction conflict with a concurrent submit, is
// ErrInProgress. A transaction refused for throttling is tried again with backoff.
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
			return s.replay(ctx, idem, reasons[1].Item)
		case reasonCode(reasons, 0) == reasonConditionFailed:
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID,
				task.Errorf(task.ErrConflict, "a task with id %s already exists", t.ID))
		case idem != nil && anyReason(reasons, reasonConflict):
			// Only a concurrent submit with the same key writes these items at once.
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID,
				task.Errorf(task.ErrInProgress, "a request with the same Idempotency-Key is being processed; try again"))
		case !anyReason(reasons, reasonConflict, reasonThrottled, reasonThroughput):
			return nil, false, fmt.Errorf("dynamo: create task %s: %w", t.ID, err)
		case attempt+1 >= s.maxAttempts:
			return nil, false, fmt.Errorf("dynamo: create task %s: %w: %w", t.ID,
				task.Errorf(task.ErrUnavailable, "the task store is overloaded; try again"), err)
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return nil, false, err
		}
	}
}

// replay answers a submit whose Idempotency-Key is already taken, from the record that holds
// it (as returned by the failed condition, or read again when it was not).
func (s *Store) replay(ctx context.Context, idem *task.IdempotencyRecord, item map[string]types.AttributeValue) (*task.Task, bool, error) {
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
			return nil, false, fmt.Errorf("dynamo: read idempotency record: %w", err)
		}
	}
	inProgress := task.Errorf(task.ErrInProgress, "a request with the same Idempotency-Key is being processed; try again")
	if item == nil {
		// The record went away between the write and the read (it expired and was deleted):
		// the caller's retry will find the key free.
		return nil, false, fmt.Errorf("dynamo: idempotency record: %w", inProgress)
	}
	var rec idempotencyItem
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return nil, false, fmt.Errorf("dynamo: decode idempotency record: %w", err)
	}
	if rec.RequestHash != idem.RequestHash {
		return nil, false, fmt.Errorf("dynamo: idempotency record for task %s: %w", rec.TaskID,
			task.Errorf(task.ErrIdempotencyMismatch, "the Idempotency-Key was used with a different request"))
	}
	t, err := s.GetTask(ctx, rec.TaskID)
	if task.IsCode(err, task.ErrNotFound) {
		return nil, false, fmt.Errorf("dynamo: idempotency record for task %s: %w", rec.TaskID, inProgress)
	}
	if err != nil {
		return nil, false, err
	}
	return t, false, nil
}
