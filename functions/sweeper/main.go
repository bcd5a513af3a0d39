// Command sweeper is SweeperFunction, invoked every minute by an EventBridge schedule: it ends or re-drives every unfinished task whose lease has run out, so that no task stays unfinished past its deadline whatever messages were lost.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler that package awsapp builds. Build
// it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import "github.com/fleetrun/fleetrun/internal/awsapp"

func main() {
	awsapp.Start("sweeper", func(a *awsapp.App) any { return a.Sweeper() }, awsapp.EnvTableName, awsapp.EnvQueueURL)
}
