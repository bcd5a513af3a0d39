package dynamo

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// GetTask reads the task with one strongly consistent GetItem (plus one Query for the rare
// device list too large to inline). An expired task is not found.
func (s *Store) GetTask(ctx context.Context, id string) (*task.Task, error) {
	t, err := s.readTask(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("dynamo: get task %s: %w", id, err)
	}
	return t, nil
}

// readTask reads and decodes a live task.
func (s *Store) readTask(ctx context.Context, id string) (*task.Task, error) {
	var item map[string]types.AttributeValue
	err := s.call(ctx, "GetItem", func(ctx context.Context) error {
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table),
			Key: key(taskPK(id), skTask), ConsistentRead: aws.Bool(true)})
		if err == nil {
			item = out.Item
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if item == nil || expired(itemExp(item), s.clock()) {
		return nil, notFound("no task %s", id)
	}
	return s.decodeTaskItem(ctx, item)
}

// decodeTaskItem decodes a task item, reading the parts of its device list first if it was
// too large to inline.
func (s *Store) decodeTaskItem(ctx context.Context, item map[string]types.AttributeValue) (*task.Task, error) {
	var parts [][]byte
	if n := idParts(item); n > 0 {
		items, err := s.queryAll(ctx, s.partitionQuery(strings.TrimPrefix(itemString(item, attrPK), prefixTask), prefixIDs))
		if err != nil {
			return nil, fmt.Errorf("read device id parts: %w", err)
		}
		for _, it := range items {
			if b, ok := it["data"].(*types.AttributeValueMemberB); ok {
				parts = append(parts, b.Value)
			}
		}
	}
	return decodeTask(item, parts)
}

// ListTasks queries the owner index newest first. The expiry and status filters run in
// DynamoDB after the read, so it keeps querying until the page is full or the index ends;
// it reads one task past the page to know whether there is a next one. The index is
// eventually consistent: a task created a moment ago may be missing on AWS.
func (s *Store) ListTasks(ctx context.Context, q task.ListQuery) (*task.TaskPage, error) {
	if q.RelaunchOf != "" {
		return s.listRelaunches(ctx, q)
	}
	limit := task.PageSize(q.Limit)
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.table),
		IndexName:                aws.String(IndexByOwner),
		KeyConditionExpression:   aws.String("#gpk = :owner"),
		FilterExpression:         aws.String("attribute_not_exists(#exp) OR #exp > :now"),
		ScanIndexForward:         aws.Bool(false),
		ExpressionAttributeNames: map[string]string{"#gpk": attrGSI1PK, "#exp": attrExp},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":owner": str(ownerPK(q.Owner)), ":now": num(s.clock().UnixNano())},
	}
	if q.Status != "" {
		in.FilterExpression = aws.String("(attribute_not_exists(#exp) OR #exp > :now) AND #status = :status")
		in.ExpressionAttributeNames["#status"] = attrStatus
		in.ExpressionAttributeValues[":status"] = str(string(q.Status))
	}
	if q.Cursor != "" {
		sk, err := decodeCursor("t1", q.Cursor)
		_, id, ok := strings.Cut(sk, "#")
		if err != nil || !ok || id == "" {
			return nil, task.BadCursor()
		}
		in.ExclusiveStartKey = map[string]types.AttributeValue{
			attrPK: str(taskPK(id)), attrSK: str(skTask), attrGSI1PK: str(ownerPK(q.Owner)), attrGSI1SK: str(sk)}
	}
	page := &task.TaskPage{Tasks: []*task.Task{}}
	var lastSK string
	for {
		need := limit + 1 - len(page.Tasks)
		if q.Status != "" {
			need = min(max(2*need, 25), task.MaxPageSize)
		}
		in.Limit = aws.Int32(int32(need))
		var out *dynamodb.QueryOutput
		err := s.call(ctx, "Query", func(ctx context.Context) (err error) {
			out, err = s.db.Query(ctx, in)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dynamo: list tasks of %s: %w", q.Owner, err)
		}
		for _, item := range out.Items {
			if len(page.Tasks) == limit {
				page.Next = encodeCursor("t1", lastSK)
				return page, nil
			}
			t, err := s.decodeTaskItem(ctx, item)
			if err != nil {
				return nil, fmt.Errorf("dynamo: list tasks of %s: %w", q.Owner, err)
			}
			page.Tasks = append(page.Tasks, t)
			lastSK = itemString(item, attrGSI1SK)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return page, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// listRelaunches lists the tasks relaunched from q.RelaunchOf, newest first: a strongly
// consistent Query of the relaunch items in that task's partition, then one BatchGetItem of
// their tasks per page. Tasks of another owner, of another status or expired are skipped.
func (s *Store) listRelaunches(ctx context.Context, q task.ListQuery) (*task.TaskPage, error) {
	limit := task.PageSize(q.Limit)
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.table),
		KeyConditionExpression:   aws.String("#pk = :pk AND begins_with(#sk, :prefix)"),
		ScanIndexForward:         aws.Bool(false),
		ConsistentRead:           aws.Bool(true),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#sk": attrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(taskPK(q.RelaunchOf)), ":prefix": str(prefixRelaunch)},
	}
	if q.Cursor != "" {
		sk, err := decodeCursor("r1", q.Cursor)
		if err != nil || !strings.HasPrefix(sk, prefixRelaunch) {
			return nil, task.BadCursor()
		}
		in.ExclusiveStartKey = key(taskPK(q.RelaunchOf), sk)
	}
	page := &task.TaskPage{Tasks: []*task.Task{}}
	var lastSK string
	for {
		in.Limit = aws.Int32(int32(limit + 1 - len(page.Tasks)))
		var out *dynamodb.QueryOutput
		err := s.call(ctx, "Query", func(ctx context.Context) (err error) {
			out, err = s.db.Query(ctx, in)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dynamo: list relaunches of %s: %w", q.RelaunchOf, err)
		}
		keys := make([]itemKey, len(out.Items))
		for i, item := range out.Items {
			keys[i] = itemKey{taskPK(itemString(item, "taskId")), skTask}
		}
		items, err := s.batchGet(ctx, keys)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list relaunches of %s: %w", q.RelaunchOf, err)
		}
		now := s.clock()
		for i, link := range out.Items {
			item := items[keys[i]]
			if item == nil || expired(itemExp(item), now) || itemString(item, "owner") != q.Owner ||
				(q.Status != "" && itemString(item, attrStatus) != string(q.Status)) {
				continue
			}
			if len(page.Tasks) == limit {
				page.Next = encodeCursor("r1", lastSK)
				return page, nil
			}
			t, err := s.decodeTaskItem(ctx, item)
			if err != nil {
				return nil, fmt.Errorf("dynamo: list relaunches of %s: %w", q.RelaunchOf, err)
			}
			page.Tasks = append(page.Tasks, t)
			lastSK = itemString(link, attrSK)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return page, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// Cursors are opaque to callers: a version tag and a position, base64url-encoded.
func encodeCursor(tag, pos string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tag + ":" + pos))
}

func decodeCursor(tag, cursor string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", err
	}
	pos, ok := strings.CutPrefix(string(b), tag+":")
	if !ok {
		return "", fmt.Errorf("cursor of another kind")
	}
	return pos, nil
}
