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

// deliveryItem is one attempt to deliver a webhook event, in its task's partition.
type deliveryItem struct {
	PK            string `dynamodbav:"pk"`
	SK            string `dynamodbav:"sk"`
	Type          string `dynamodbav:"type"`
	TaskID        string `dynamodbav:"taskId"`
	EventID       string `dynamodbav:"eventId"`
	HookType      string `dynamodbav:"hookType"`
	EventAt       string `dynamodbav:"eventAt"`
	Attempt       int    `dynamodbav:"attempt"`
	At            string `dynamodbav:"at"`
	AtNs          int64  `dynamodbav:"atNs"`
	StatusCode    int    `dynamodbav:"statusCode,omitempty"`
	Error         string `dynamodbav:"error,omitempty"`
	Outcome       string `dynamodbav:"outcome"`
	NextAttemptAt string `dynamodbav:"nextAttemptAt,omitempty"`
	Exp           int64  `dynamodbav:"exp,omitempty"`
	TTL           int64  `dynamodbav:"ttl,omitempty"`
}

// deliveryEventSK is the start of the sort keys of one event's attempts: the event's time at a
// fixed width, so that a task's attempts sort by event time, then event id, then attempt.
func deliveryEventSK(eventAt time.Time, eventID string) string {
	return prefixDelivery + eventAt.UTC().Format(sortTimeLayout) + "#" + eventID + "#"
}

func deliverySK(d *task.Delivery) string {
	return fmt.Sprintf("%s%06d", deliveryEventSK(d.EventAt, d.EventID), d.Attempt)
}

// RecordDelivery implements task.Store: it reads the task (missing or expired is CodeNotFound)
// and puts the record with one PutItem conditioned on the attempt being unrecorded, or claimed
// (an outcome), or claimed long enough ago to be abandoned (a claim). The record takes its
// task's expiry, or while the task runs the bound its devices get (see deviceExpiry); the
// terminal transition stamps the task's expiry on it like on every item of the partition.
func (s *Store) RecordDelivery(ctx context.Context, d task.Delivery) error {
	t, err := s.readTask(ctx, d.TaskID)
	if err != nil {
		return fmt.Errorf("dynamo: record delivery %s attempt %d: %w", d.EventID, d.Attempt, err)
	}
	expires := t.ExpiresAt
	if expires.IsZero() {
		expires = s.deviceExpiry(t)
	}
	exp, ttl := expiry(expires)
	it := deliveryItem{PK: taskPK(d.TaskID), SK: deliverySK(&d), Type: kindDelivery, TaskID: d.TaskID,
		EventID: d.EventID, HookType: string(d.Type), EventAt: formatTime(d.EventAt), Attempt: d.Attempt,
		At: formatTime(d.At), AtNs: d.At.UnixNano(), StatusCode: d.StatusCode, Error: d.Error,
		Outcome: string(d.Outcome), NextAttemptAt: formatTimePtr(d.NextAttemptAt), Exp: exp, TTL: ttl}
	item, err := attributevalue.MarshalMap(it)
	if err != nil {
		return fmt.Errorf("dynamo: record delivery %s: %w", d.EventID, err)
	}
	names := map[string]string{"#pk": attrPK, "#outcome": "outcome"}
	values := map[string]types.AttributeValue{":sending": str(string(task.DeliverySending))}
	cond := "attribute_not_exists(#pk) OR #outcome = :sending"
	if d.Outcome == task.DeliverySending {
		names["#atNs"] = "atNs"
		values[":stale"] = num(d.At.Add(-task.DeliveryClaimTimeout).UnixNano())
		cond = "attribute_not_exists(#pk) OR (#outcome = :sending AND #atNs <= :stale)"
	}
	err = s.call(ctx, "PutItem", func(ctx context.Context) error {
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item,
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: names, ExpressionAttributeValues: values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
		return err
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return fmt.Errorf("dynamo: record delivery: %w", &task.Error{Code: task.CodeConflict,
			Message: fmt.Sprintf("attempt %d of %s is already %s", d.Attempt, d.EventID, itemString(failed.Item, "outcome"))})
	}
	if err != nil {
		return fmt.Errorf("dynamo: record delivery %s attempt %d: %w", d.EventID, d.Attempt, err)
	}
	return nil
}

// ListDeliveries implements task.Store with one Query of the task's partition per page. The
// cursor is the sort key of the last record returned.
func (s *Store) ListDeliveries(ctx context.Context, taskID string, q task.DeliveryQuery) (*task.DeliveryPage, error) {
	prefix := prefixDelivery
	if q.EventID != "" {
		prefix = deliveryEventSK(q.EventAt, q.EventID)
	}
	in := s.partitionQuery(taskID, prefix)
	in.Limit = aws.Int32(int32(task.PageSize(q.Limit)))
	if q.Cursor != "" {
		sk, err := decodeCursor("w1", q.Cursor)
		if err != nil || !strings.HasPrefix(sk, prefix) {
			return nil, task.BadCursor()
		}
		in.ExclusiveStartKey = key(taskPK(taskID), sk)
	}
	var out *dynamodb.QueryOutput
	err := s.call(ctx, "Query", func(ctx context.Context) (err error) {
		out, err = s.db.Query(ctx, in)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dynamo: list deliveries of %s: %w", taskID, err)
	}
	page := &task.DeliveryPage{Deliveries: make([]*task.Delivery, 0, len(out.Items))}
	for _, item := range out.Items {
		d, err := decodeDelivery(item)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list deliveries of %s: %w", taskID, err)
		}
		page.Deliveries = append(page.Deliveries, d)
	}
	if len(out.LastEvaluatedKey) > 0 {
		page.Next = encodeCursor("w1", itemString(out.LastEvaluatedKey, attrSK))
	}
	return page, nil
}

func decodeDelivery(item map[string]types.AttributeValue) (*task.Delivery, error) {
	var it deliveryItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return nil, fmt.Errorf("decode delivery item: %w", err)
	}
	d := &task.Delivery{TaskID: it.TaskID, EventID: it.EventID, Type: task.WebhookType(it.HookType), Attempt: it.Attempt,
		StatusCode: it.StatusCode, Error: it.Error, Outcome: task.DeliveryOutcome(it.Outcome)}
	var err error
	if d.EventAt, err = parseTime(it.EventAt); err != nil {
		return nil, fmt.Errorf("decode delivery %s eventAt: %w", it.EventID, err)
	}
	if d.At, err = parseTime(it.At); err != nil {
		return nil, fmt.Errorf("decode delivery %s at: %w", it.EventID, err)
	}
	if d.NextAttemptAt, err = parseTimePtr(it.NextAttemptAt); err != nil {
		return nil, fmt.Errorf("decode delivery %s nextAttemptAt: %w", it.EventID, err)
	}
	return d, nil
}
