// Command cancel is CancelFunction, DELETE /tasks/{id} behind API Gateway: it cancels a task at once or asks the executor to stop its devices.
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
		fmt.Fprintln(os.Stderr, "cancel:", err)
		os.Exit(1)
	}
	lambda.Start(app.HTTP())
}
