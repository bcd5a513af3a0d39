package ssmcmd

import "path"

// DefaultStep is the step of AWS-RunRemoteScript that runs the script.
const DefaultStep = "runShellScript"

// OutputPrefix is the OutputS3KeyPrefix of task taskID's commands.
func OutputPrefix(taskID string) string { return "fleetrun/" + taskID }

// OutputKey returns the S3 key function of the output of the document step step (DefaultStep
// when empty): the key of one stream ("stdout" or "stderr") of the output of device
// instanceID, run by command commandID of task taskID. The SSM agent writes each step's output
// under the command's key prefix, the command id, the instance id, the step's action without
// its colon and the step's id (its name, in documents whose steps give no "id" input, such as
// AWS-RunRemoteScript):
//
//	fleetrun/<task id>/<command id>/<instance id>/awsrunShellScript/runShellScript/stdout
//
// The step must be an aws:runShellScript step. The agent writes nothing for an empty stream.
func OutputKey(step string) func(taskID, commandID, instanceID, stream string) string {
	if step == "" {
		step = DefaultStep
	}
	return func(taskID, commandID, instanceID, stream string) string {
		return path.Join(OutputPrefix(taskID), commandID, instanceID, "awsrunShellScript", step, stream)
	}
}
