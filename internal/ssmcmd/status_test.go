package ssmcmd_test

import (
	"testing"

	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestStatusFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status, details string
		want            task.DeviceStatus
	}{
		{"Pending", "Pending", task.DevicePending},
		{"Delayed", "Delayed", task.DevicePending},
		{"InProgress", "InProgress", task.DeviceRunning},
		{"InProgress", "In Progress", task.DeviceRunning},
		{"Cancelling", "Cancelling", task.DeviceRunning},
		{"Success", "Success", task.DeviceSucceeded},
		{"Failed", "Failed", task.DeviceFailed},
		{"Failed", "Undeliverable", task.DeviceUndeliverable},
		{"Failed", "Terminated", task.DeviceUndeliverable},
		{"Failed", "InvalidPlatform", task.DeviceUndeliverable},
		{"Failed", "Invalid Platform", task.DeviceUndeliverable},
		{"Failed", "AccessDenied", task.DeviceUndeliverable},
		{"Failed", "Access Denied", task.DeviceUndeliverable},
		{"TimedOut", "DeliveryTimedOut", task.DeviceUndeliverable},
		{"TimedOut", "Delivery Timed Out", task.DeviceUndeliverable},
		{"TimedOut", "ExecutionTimedOut", task.DeviceTimedOut},
		{"Failed", "ExecutionTimedOut", task.DeviceTimedOut},
		{"TimedOut", "", task.DeviceTimedOut},
		{"Cancelled", "Cancelled", task.DeviceCancelled},
		{"Cancelled", "Terminated", task.DeviceUndeliverable},
		// EventBridge events carry a status and, at most, status details.
		{"Undeliverable", "", task.DeviceUndeliverable},
		{"Terminated", "", task.DeviceUndeliverable},
		{"DeliveryTimedOut", "", task.DeviceUndeliverable},
		{"Success", "", task.DeviceSucceeded},
		{"Failed", "", task.DeviceFailed},
		{"SomethingNew", "", task.DevicePending},
	} {
		if got := ssmcmd.EventStatus(tc.status, tc.details); got != tc.want {
			t.Errorf("%s/%s → %s, want %s", tc.status, tc.details, got, tc.want)
		}
	}
}
