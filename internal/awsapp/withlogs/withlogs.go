// Package withlogs wires CloudWatch Logs into OutputFunction's App: a device's output followed
// while its command runs, where the stack sends the commands' output to OUTPUT_LOG_GROUP.
package withlogs

import (
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/cwoutput"
)

// Follow is the CloudWatch Logs service of awsapp; without an OUTPUT_LOG_GROUP it wires
// nothing.
func Follow(a *awsapp.App) {
	if a.Config.OutputLogGroup == "" {
		return
	}
	a.Parts.Follow = cwoutput.New(cwoutput.Config{API: cloudwatchlogs.NewFromConfig(a.SDK), Devices: a.Store, Group: a.Config.OutputLogGroup})
}
