// Command webhook is WebhookFunction, the consumer of the webhook queue: it posts each task's webhook events to the URL the task names, signed, and retries them for a day.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), the signing secret read once from its SSM parameter, a JSON
// logger, and the handler that package awsapp builds. Build it with -tags lambda.norpc for the
// provided.al2023 runtime.
package main

import "github.com/fleetrun/fleetrun/internal/awsapp"

func main() {
	awsapp.Start("webhook", func(a *awsapp.App) any { return a.Webhooks() },
		awsapp.EnvTableName, awsapp.EnvWebhookQueueURL, awsapp.EnvWebhookSecretParameter)
}
