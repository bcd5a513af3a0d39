// Command webhook is WebhookFunction, the consumer of the webhook queue: it posts each task's webhook events to the URL the task names, signed, and retries them for a day.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that
// package awsapp builds, and the services it calls besides DynamoDB, and only those, so that
// it links no other SDK client: SQS, SSM. Build it with -tags lambda.norpc for the
// provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withsqs"
	"github.com/fleetrun/fleetrun/internal/awsapp/withssm"
)

func main() {
	awsapp.Start("webhook", func(a *awsapp.App) any { return a.Webhooks() },
		[]awsapp.Service{withsqs.Queues, withssm.Secret},
		awsapp.EnvTableName, awsapp.EnvWebhookQueueURL, awsapp.EnvWebhookSecretParameter)
}
