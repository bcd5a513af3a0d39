// Command sweeper is SweeperFunction, invoked every minute by an EventBridge schedule: it ends or re-drives every unfinished task whose lease has run out, so that no task stays unfinished past its deadline whatever messages were lost.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that
// package awsapp builds, and the services it calls besides DynamoDB, and only those, so that
// it links no other SDK client: EventBridge, SQS, SSM. Build it with -tags lambda.norpc for the
// provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withevents"
	"github.com/fleetrun/fleetrun/internal/awsapp/withsqs"
	"github.com/fleetrun/fleetrun/internal/awsapp/withssm"
)

func main() {
	awsapp.Start("sweeper", func(a *awsapp.App) any { return a.Sweeper() },
		[]awsapp.Service{withsqs.Queues, withssm.Runner, withevents.Publisher},
		awsapp.EnvTableName, awsapp.EnvQueueURL)
}
