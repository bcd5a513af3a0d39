package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// cancelDevices is "fleetrun cancel TASK --device D": each device is cancelled alone and the
// task runs on. With --wait, it waits until each has stopped (cancelled, or ended on its own
// first) and prints how it ended.
func (a *app) cancelDevices(ctx context.Context, id string, devices []string, wait bool) int {
	c := &a.common
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("cancel", err)
	}
	var out []api.Device
	for _, deviceID := range devices {
		d, err := cl.CancelDevice(ctx, id, deviceID)
		if err != nil {
			return a.fail(ctx, err)
		}
		if wait {
			if d, err = waitDevice(ctx, cl, id, d); err != nil {
				return a.fail(ctx, err)
			}
		}
		out = append(out, *d)
		if !c.json {
			fmt.Fprintf(a.stdout, "device %s of task %s is %s\n", d.ID, id, deviceState(d))
		}
	}
	if c.json {
		printJSON(a.stdout, api.DeviceList{Items: out})
	}
	return ExitOK
}

// deviceState says where a device is, "being stopped" for a running one asked to stop.
func deviceState(d *api.Device) string {
	if d.Status == api.DeviceRunning && d.CancelRequestedAt != nil {
		return "running, being stopped"
	}
	return d.Status
}

// waitDevice polls device d until it has ended.
func waitDevice(ctx context.Context, cl *client.Client, id string, d *api.Device) (*api.Device, error) {
	delay := 200 * time.Millisecond
	for d.Status == api.DevicePending || d.Status == api.DeviceRunning {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
		var err error
		if d, err = cl.Device(ctx, id, d.ID); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// relaunchOptions are relaunch's own flags.
type relaunchOptions struct {
	failed, all               bool
	devices                   listFlag
	scriptArgs                repeatFlag
	noArgs                    bool
	timeout, deliveryTimeout  string
	maxConcurrency, maxErrors string
	idemKey                   string
	wait, cancelOnInterrupt   bool
}

func (a *app) relaunchCommand() *cobra.Command {
	var o relaunchOptions
	cmd := a.command("relaunch ID --failed | --all | --devices a,b", "Run a finished task again on its failed devices (or all, or some)",
		"Creates a new task that runs a finished task's script again on the devices that did not\n"+
			"succeed (--failed: failed, timed out, undeliverable or cancelled), on all of them (--all),\n"+
			"or on those named (--devices), with the original's settings unless flags change them. It\n"+
			"prints the new task's id, or with --wait follows it to the end.", exactArgs(1),
		func(ctx context.Context, pos []string) int { return a.relaunch(ctx, pos[0], &o) })
	f := cmd.Flags()
	f.BoolVar(&o.failed, "failed", false, "relaunch every device that did not succeed")
	f.BoolVar(&o.all, "all", false, "relaunch every device")
	f.Var(&o.devices, "devices", "relaunch these device `ids`, comma-separated; may be repeated")
	f.Var(&o.scriptArgs, "arg", "an `argument` replacing the original's; repeat for several")
	f.BoolVar(&o.noArgs, "no-args", false, "run the script without the original's arguments")
	f.StringVar(&o.timeout, "timeout", "", "replace the original's timeout, in `seconds` or as a duration (90, 15m)")
	f.StringVar(&o.deliveryTimeout, "delivery-timeout", "", "replace the original's delivery timeout, in `seconds` or as a duration")
	f.StringVar(&o.maxConcurrency, "max-concurrency", "", "replace the original's concurrency, a `number` or a percentage")
	f.StringVar(&o.maxErrors, "max-errors", "", "replace the original's error budget, a `number` or a percentage")
	f.StringVar(&o.idemKey, "idempotency-key", "", "Idempotency-Key: relaunching again with the same `key` returns the same task")
	f.BoolVar(&o.wait, "wait", false, "follow the new task to its end, then exit as listed below")
	f.BoolVar(&o.cancelOnInterrupt, "cancel-on-interrupt", false, "with --wait, cancel the task on Ctrl-C without asking")
	return cmd
}

func (a *app) relaunch(ctx context.Context, id string, o *relaunchOptions) int {
	c := &a.common
	var req api.RelaunchRequest
	chosen := 0
	if o.failed {
		req.Devices, chosen = client.RelaunchFailed(), chosen+1
	}
	if o.all {
		req.Devices, chosen = client.RelaunchAll(), chosen+1
	}
	if len(o.devices) > 0 {
		req.Devices, chosen = client.RelaunchDevices(o.devices...), chosen+1
	}
	switch {
	case chosen != 1:
		return a.usageError("relaunch", errors.New("pass one of --failed, --all or --devices"))
	case o.noArgs && len(o.scriptArgs) > 0:
		return a.usageError("relaunch", errors.New("--no-args and --arg exclude each other"))
	case o.cancelOnInterrupt && !o.wait:
		return a.usageError("relaunch", errors.New("--cancel-on-interrupt needs --wait"))
	}
	if len(o.scriptArgs) > 0 || o.noArgs {
		args := []string(o.scriptArgs)
		if args == nil {
			args = []string{}
		}
		req.Args = &args
	}
	if o.timeout != "" {
		secs, err := parseSeconds(o.timeout)
		if err != nil {
			return a.usageError("relaunch", fmt.Errorf("--timeout: %w", err))
		}
		req.TimeoutSeconds = &secs
	}
	if o.deliveryTimeout != "" {
		secs, err := parseSeconds(o.deliveryTimeout)
		if err != nil {
			return a.usageError("relaunch", fmt.Errorf("--delivery-timeout: %w", err))
		}
		req.DeliveryTimeoutSeconds = &secs
	}
	if o.maxConcurrency != "" {
		req.MaxConcurrency = &o.maxConcurrency
	}
	if o.maxErrors != "" {
		req.MaxErrors = &o.maxErrors
	}
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("relaunch", err)
	}
	var opts []client.SubmitOption
	if o.idemKey != "" {
		opts = append(opts, client.WithIdempotencyKey(o.idemKey))
	}
	t, err := cl.Relaunch(ctx, id, req, opts...)
	return a.created(ctx, cl, t, err, "relaunched task "+id+" as "+idOf(t), o.wait, o.cancelOnInterrupt)
}

func (a *app) inventoryCommand() *cobra.Command {
	var tags listFlag
	cmd := a.command("inventory [--tag Env=prod]...", "List the devices a submit may target by tag",
		"Lists the devices a submit may target with --target: locally those of the server's\n"+
			"--inventory file, on AWS the SSM managed nodes, with their tags. --tag keeps the devices\n"+
			"whose tag has one of the values (Role=web|db); every --tag must hold.", exactArgs(0),
		func(ctx context.Context, _ []string) int { return a.inventory(ctx, tags) })
	cmd.Flags().Var(&tags, "tag", "`NAME=VALUE[|VALUE…]` (or tag:NAME=…): only devices with this tag; repeat for several")
	return cmd
}

func (a *app) inventory(ctx context.Context, tags listFlag) int {
	c := &a.common
	opts := client.InventoryOptions{Tags: map[string][]string{}}
	for _, t := range tags {
		name, values, ok := strings.Cut(strings.TrimPrefix(t, "tag:"), "=")
		if !ok || name == "" || values == "" {
			return a.usageError("inventory", fmt.Errorf("--tag %q: want NAME=VALUE", t))
		}
		opts.Tags[name] = append(opts.Tags[name], strings.Split(values, "|")...)
	}
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("inventory", err)
	}
	list := api.InventoryList{Items: []api.InventoryDevice{}}
	for d, err := range cl.Inventory(ctx, opts) {
		if err != nil {
			return a.fail(ctx, err)
		}
		list.Items = append(list.Items, d)
	}
	if c.json {
		printJSON(a.stdout, list)
		return ExitOK
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tNAME\tPLATFORM\tPING\tTAGS")
	for _, d := range list.Items {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(d.Tags)) {
			kv = append(kv, k+"="+d.Tags[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(d.Name), orDash(d.Platform), d.PingStatus, strings.Join(kv, " "))
	}
	tw.Flush()
	return ExitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseTargets reads submit's --target flags: tag:NAME=VALUE[,VALUE…] (or NAME=…), one target
// each; the values are ORed, the targets ANDed.
func parseTargets(flags []string) ([]api.Target, error) {
	var out []api.Target
	for _, f := range flags {
		name, values, ok := strings.Cut(strings.TrimPrefix(f, "tag:"), "=")
		if !ok || name == "" || values == "" {
			return nil, fmt.Errorf("--target %q: want tag:NAME=VALUE[,VALUE…]", f)
		}
		out = append(out, api.Target{Key: "tag:" + name, Values: strings.Split(values, ",")})
	}
	return out, nil
}

// followOutput copies a device's output as it is written, until the device ends.
func (a *app) followOutput(ctx context.Context, cl *client.Client, id, deviceID string, stream client.Stream) int {
	rc, err := cl.FollowOutput(ctx, id, deviceID, stream)
	if err != nil {
		return a.fail(ctx, err)
	}
	defer rc.Close()
	if _, err := io.Copy(a.stdout, rc); err != nil {
		return a.fail(ctx, fmt.Errorf("follow output of %s on %s: %w", deviceID, id, err))
	}
	return ExitOK
}
