// Package task is fleetrun's domain, at the centre of every other package: a Task run on a set
// of Devices, their statuses and the tables of the moves between them (status.go), the
// transitions a store may write (transition.go) and how a runner's report changes a device
// (device.go), the rules of a submitted request and of a listing query (validate.go,
// query.go), the errors and their codes (error.go), and the Store contract that the embedded
// store and the DynamoDB store both satisfy, proved by the storetest conformance suite.
//
// It imports no AWS package and nothing of net/http: adapters depend on it, never the other
// way round. Codes classify errors here; internal/httpapi maps them to HTTP statuses in one
// place.
package task
