// Command progress is ProgressFunction, the target of the rule on SSM's invocation status-change events: it moves each device as SSM reports it.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler that package awsapp builds. Build
// it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import "github.com/fleetrun/fleetrun/internal/awsapp"

func main() {
	awsapp.Start("progress", func(a *awsapp.App) any { return a.Progress() }, awsapp.EnvTableName, awsapp.EnvQueueURL)
}
