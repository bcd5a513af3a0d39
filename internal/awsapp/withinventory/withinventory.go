// Package withinventory wires the managed nodes into a function's App: SSM's list of nodes
// and EC2's tags of its instances, which resolve a submit's targets (SubmitFunction) and
// answer GET /devices (InventoryFunction).
package withinventory

import (
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/ssminventory"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
)

// Inventory is the inventory service of awsapp; SSM's throttles are counted in the function's
// metrics.
func Inventory(a *awsapp.App) {
	a.Parts.Inventory = ssminventory.New(ssminventory.Config{
		SSM:    ssm.NewFromConfig(a.SDK, ssmrun.ObserveThrottles(a.Metrics)),
		EC2:    ec2.NewFromConfig(a.SDK),
		Logger: a.Log,
	})
}
