// Package awsflow holds the tests of fleetrun's AWS adapters wired together as the Lambda
// functions wire them: the DynamoDB store, the SQS queue, the SSM runner and the EventBridge
// publisher behind one engine, built by awsapp.New from the functions' configuration, with the
// executor handed SQS events the way Lambda's event source mapping hands them.
//
// The adapters are each tested on their own in their packages; these tests prove that they
// agree with one another over the real wire protocols: DynamoDB, SQS and EventBridge on moto,
// and SSM on the ssmtest server, which the SDK reaches through AWS_ENDPOINT_URL_SSM as
// production would reach an emulator. They count the AWS requests each operation makes,
// follow tasks from submit to their terminal status through redelivered messages, throttling
// and crashes, and check the events a rule delivers. They need moto and skip under -short.
//
// The package has no code of its own.
package awsflow
