package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"slices"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// endpoint is the fleetrun API the examples call: a `fleetrun serve` that TestMain starts, whose
// script root holds hello.sh (prints a greeting), flaky.sh (fails on device web-2) and slow.sh
// (runs for a minute). Against your own server it would be "http://127.0.0.1:8080", or an
// API Gateway URL with client.WithSigV4.
var endpoint string

// Submit a script to run on two devices and wait for it to finish.
func Example() {
	ctx := context.Background()
	c, err := client.New(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	task, err := c.Submit(ctx, api.SubmitRequest{
		DeviceIDs: []string{"web-1", "web-2"},
		ScriptURL: "hello.sh",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("submitted:", task.Status)

	task, err = c.Wait(ctx, task.ID, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("finished:", task.Status)
	fmt.Println("succeeded:", task.Result.SucceededDevices)
	// Output:
	// submitted: pending
	// finished: completed
	// succeeded: [web-1 web-2]
}

// Follow a task's progress: the callback sees the task each time it changes.
func ExampleClient_Wait() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	task, err := c.Submit(ctx, api.SubmitRequest{DeviceIDs: []string{"web-1", "web-2", "web-3"}, ScriptURL: "hello.sh"})
	if err != nil {
		log.Fatal(err)
	}
	var seen []int64
	task, err = c.Wait(ctx, task.ID, func(t *api.Task) {
		// A real program would draw t.Progress.Percentage here.
		seen = append(seen, t.Version)
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d of %d devices succeeded\n", task.Status, task.Progress.Devices.Succeeded, task.Progress.Devices.Total)
	fmt.Println("progress reported in order:", slices.IsSorted(seen), "ending at the final version:", seen[len(seen)-1] == task.Version)
	// Output:
	// completed: 3 of 3 devices succeeded
	// progress reported in order: true ending at the final version: true
}

// List the devices on which a task failed, with their exit code and what they said.
func ExampleClient_Devices() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	task, err := c.Submit(ctx, api.SubmitRequest{DeviceIDs: []string{"web-1", "web-2", "web-3"}, ScriptURL: "flaky.sh"})
	if err != nil {
		log.Fatal(err)
	}
	if task, err = c.Wait(ctx, task.ID, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Status, "with", task.Progress.Devices.Failed, "failed")
	failed := client.DeviceOptions{Statuses: []string{api.DeviceFailed, api.DeviceTimedOut, api.DeviceUndeliverable}}
	for d, err := range c.Devices(ctx, task.ID, failed) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s exit=%d: %s", d.ID, d.Status, *d.ExitCode, d.Stderr)
	}
	// Output:
	// completed with 1 failed
	// web-2 failed exit=2: web-2: disk full
}

// Read everything a device printed.
func ExampleClient_Output() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	task, err := c.Submit(ctx, api.SubmitRequest{DeviceIDs: []string{"db-1"}, ScriptURL: "hello.sh", Args: []string{"--verbose"}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Wait(ctx, task.ID, nil); err != nil {
		log.Fatal(err)
	}
	out, err := c.Output(ctx, task.ID, "db-1", client.Stdout)
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	io.Copy(os.Stdout, out)
	// Output:
	// hello from db-1 (--verbose)
}

// Cancel a running task: it becomes cancelling at once and cancelled when its devices stopped.
func ExampleClient_Cancel() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	task, err := c.Submit(ctx, api.SubmitRequest{DeviceIDs: []string{"web-1", "web-2"}, ScriptURL: "slow.sh"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Cancel(ctx, task.ID); err != nil {
		log.Fatal(err)
	}
	task, err = c.Wait(ctx, task.ID, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Status)

	// A finished task cannot be cancelled again; cancelling a cancelled one is harmless.
	_, err = c.Cancel(ctx, task.ID)
	fmt.Println("cancel again:", err)
	// Output:
	// cancelled
	// cancel again: <nil>
}

// Walk through every task, page after page.
func ExampleClient_List() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	var mine []string
	for range 3 {
		task, err := c.Submit(ctx, api.SubmitRequest{DeviceIDs: []string{"web-1"}, ScriptURL: "hello.sh"})
		if err != nil {
			log.Fatal(err)
		}
		mine = append(mine, task.ID)
	}
	// Tasks come newest first; small pages make the iterator fetch several.
	var listed []string
	for task, err := range c.List(ctx, client.ListOptions{PageSize: 2}) {
		if err != nil {
			log.Fatal(err)
		}
		if slices.Contains(mine, task.ID) {
			listed = append(listed, task.ID)
		}
	}
	slices.Reverse(listed)
	fmt.Println("all listed, newest first:", slices.Equal(listed, mine))
	// Output:
	// all listed, newest first: true
}

// Retrying a submit with the same idempotency key returns the task the first one created.
func ExampleWithIdempotencyKey() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	req := api.SubmitRequest{DeviceIDs: []string{"web-1"}, ScriptURL: "hello.sh"}
	first, err := c.Submit(ctx, req, client.WithIdempotencyKey("deploy-2025-06-01"))
	if err != nil {
		log.Fatal(err)
	}
	again, err := c.Submit(ctx, req, client.WithIdempotencyKey("deploy-2025-06-01"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same task:", first.ID == again.ID)
	// Output:
	// same task: true
}

// A request the server refuses comes back as *client.Error, with each invalid field.
func ExampleError() {
	ctx := context.Background()
	c, _ := client.New(endpoint)
	_, err := c.Submit(ctx, api.SubmitRequest{DeviceIDs: []string{"web-1", "web-1"}, ScriptURL: "hello.sh"})
	if e, ok := client.AsError(err); ok {
		fmt.Println(e.Status, e.Type)
		for _, f := range e.Errors {
			fmt.Println(f.Pointer)
		}
	}
	// Output:
	// 422 urn:fleetrun:problem:validation
	// /deviceIds/1
}

// A task that does not exist, or belongs to someone else, is not found.
func ExampleIsNotFound() {
	c, _ := client.New(endpoint)
	_, err := c.Get(context.Background(), "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	fmt.Println(client.IsNotFound(err))
	// Output:
	// true
}
