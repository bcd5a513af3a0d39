// Package withevents wires EventBridge into a function's App: the publisher of the "Task
// Finished" events, in every function that can end a task.
package withevents

import (
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/eventbridge"
)

// Publisher is the EventBridge service of awsapp, publishing to EVENT_BUS_NAME.
func Publisher(a *awsapp.App) {
	a.Parts.Publisher = eventbridge.New(awseventbridge.NewFromConfig(a.SDK), a.Config.EventBusName, eventbridge.Options{Logger: a.Log})
}
