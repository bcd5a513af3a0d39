package awstest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// scriptedHTTP answers DynamoDB requests without a network: the first fail answers are 500s,
// the rest an empty success.
type scriptedHTTP struct {
	mu   sync.Mutex
	fail int
	sent int
}

func (s *scriptedHTTP) Do(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent++
	status, body := http.StatusOK, "{}"
	if s.fail > 0 {
		s.fail--
		status, body = http.StatusInternalServerError, `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"scripted"}`
	}
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader(body)),
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}}, Request: req}, nil
}

func TestCounterCountsEveryAttempt(t *testing.T) {
	t.Parallel()
	var c Counter
	server := &scriptedHTTP{fail: 2}
	client := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials:  credentials.NewStaticCredentialsProvider("id", "secret", ""),
		HTTPClient:   server,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		}),
		APIOptions: []func(*middleware.Stack) error{c.Register},
	})
	ctx := context.Background()
	key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}
	if _, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"), Key: key}); err != nil {
		t.Fatalf("GetItem after two 500s: %v", err)
	}
	if _, err := client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("t"), Key: key}); err != nil {
		t.Fatalf("DeleteItem: %v", err)
	}
	if got := c.Count("GetItem"); got != 3 {
		t.Errorf("Count(GetItem) = %d, want 3 (two failed attempts and the retry)", got)
	}
	if got, want := c.Total(), server.sent; got != want {
		t.Errorf("Total = %d, but %d requests were sent", got, want)
	}
	if got := c.Snapshot(); got["DynamoDB.DeleteItem"] != 1 {
		t.Errorf("Snapshot = %v, want DynamoDB.DeleteItem=1", got)
	}
	if got, want := c.String(), "DynamoDB.DeleteItem=1 DynamoDB.GetItem=3"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	c.Reset()
	if c.Total() != 0 || c.Count("GetItem") != 0 {
		t.Errorf("after Reset: %s", c.String())
	}
}
