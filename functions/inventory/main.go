// Command inventory is InventoryFunction, GET /devices behind API Gateway: the managed nodes a submit may target, with their tags.
//
// It only wires, through awsapp.Start: configuration from the environment, the SDK
// configuration from the environment Lambda provides (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that package awsapp builds, and the
// services it calls, and only those, so that it links no other SDK client: SSM and EC2 (the
// managed nodes and their tags). It reads nothing from the table. Build it with -tags
// lambda.norpc for the provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withinventory"
)

func main() {
	awsapp.Start("inventory", func(a *awsapp.App) any { return a.HTTP() },
		[]awsapp.Service{withinventory.Inventory})
}
