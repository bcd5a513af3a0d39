package awstest

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func TestMain(m *testing.M) { Main(m) }

func TestMotoAnswersThroughTheDefaultConfig(t *testing.T) {
	cfg := Config(t)
	client := sqs.NewFromConfig(cfg)
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: new("awstest-probe")})
	if err != nil {
		t.Fatalf("create queue on moto: %v", err)
	}
	if out.QueueUrl == nil || *out.QueueUrl == "" {
		t.Fatal("moto returned no queue url")
	}
}
