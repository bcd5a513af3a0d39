// Command sweeper is SweeperFunction, invoked every minute by an EventBridge schedule: it ends or re-drives every unfinished task whose lease has run out, so that no task stays unfinished past its deadline whatever messages were lost.
//
// It only wires: configuration from the environment, the SDK configuration (which honours
// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler that
// package awsapp builds. Build it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/fleetrun/fleetrun/internal/awsapp"
)

func main() {
	app, err := awsapp.Setup(context.Background(), awsapp.EnvTableName, awsapp.EnvQueueURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweeper:", err)
		os.Exit(1)
	}
	lambda.Start(app.Sweeper())
}
