// Command submit is SubmitFunction, POST /tasks behind API Gateway: it validates a submission, stores the pending task and queues its dispatch.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler that package awsapp builds. Build
// it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import "github.com/fleetrun/fleetrun/internal/awsapp"

func main() {
	awsapp.Start("submit", func(a *awsapp.App) any { return a.HTTP() }, awsapp.EnvTableName, awsapp.EnvQueueURL, awsapp.EnvAllowedScriptBuckets)
}
