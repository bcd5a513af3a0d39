// Command executor is ExecutorFunction, the consumer of the executor queue: it dispatches tasks to SSM Run Command, polls their progress and cancels them.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler that package awsapp builds. Build
// it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import "github.com/fleetrun/fleetrun/internal/awsapp"

func main() {
	awsapp.Start("executor", func(a *awsapp.App) any { return a.Executor() }, awsapp.EnvTableName, awsapp.EnvQueueURL, awsapp.EnvAllowedScriptBuckets)
}
