package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// submitOptions are submit's own flags.
type submitOptions struct {
	devices                            listFlag
	targets                            repeatFlag
	includeOffline                     bool
	scriptArgs                         repeatFlag
	devicesFile, script, timeout       string
	deliveryTimeout                    string
	maxConcurrency, maxErrors, idemKey string
	wait, cancelOnInterrupt            bool
}

func (a *app) submitCommand() *cobra.Command {
	var o submitOptions
	cmd := a.command("submit --devices a,b | --devices-file F | --target tag:K=V --script URL", "Submit a task; --wait to follow it to the end",
		"Submits a task that runs the script on every device, and prints its id (or, with\n--wait, follows it to the end). --target names the devices by tag instead: each\n--target tag:NAME=V1,V2 keeps the devices whose tag has one of the values, and every\n--target must hold; they are resolved when the task is submitted.", exactArgs(0),
		func(ctx context.Context, _ []string) int { return a.submit(ctx, &o) })
	f := cmd.Flags()
	f.Var(&o.devices, "devices", "comma-separated device `ids`; may be repeated")
	f.StringVar(&o.devicesFile, "devices-file", "", "`file` of device ids, one a line (# comments; - for stdin)")
	f.Var(&o.targets, "target", "`tag:NAME=VALUE[,VALUE…]`: the devices with this tag (see \"fleetrun inventory\"); repeat to AND")
	f.BoolVar(&o.includeOffline, "include-offline", false, "with --target, include devices that are offline (AWS)")
	f.StringVar(&o.script, "script", "", "the script's `URL`: s3://bucket/key on AWS, a path under the script root locally")
	f.Var(&o.scriptArgs, "arg", "an `argument` for the script, passed as is; repeat for several")
	f.StringVar(&o.timeout, "timeout", "", "how long the task may run, in `seconds` or as a duration (90, 15m)")
	f.StringVar(&o.deliveryTimeout, "delivery-timeout", "", "how long a device may take to pick the task up, in `seconds` or as a duration (AWS)")
	f.StringVar(&o.maxConcurrency, "max-concurrency", "", "devices run at once, a `number` or a percentage (10%)")
	f.StringVar(&o.maxErrors, "max-errors", "", "failed devices after which the task stops, a `number` or a percentage")
	f.StringVar(&o.idemKey, "idempotency-key", "", "Idempotency-Key: submitting again with the same `key` returns the same task")
	f.BoolVar(&o.wait, "wait", false, "follow the task to its end, then exit as listed below")
	f.BoolVar(&o.cancelOnInterrupt, "cancel-on-interrupt", false, "with --wait, cancel the task on Ctrl-C without asking")
	return cmd
}

func (a *app) submit(ctx context.Context, o *submitOptions) int {
	c := &a.common
	req := api.SubmitRequest{DeviceIDs: o.devices, ScriptURL: o.script, Args: o.scriptArgs,
		MaxConcurrency: o.maxConcurrency, MaxErrors: o.maxErrors}
	if o.devicesFile != "" {
		ids, err := a.readDevices(o.devicesFile)
		if err != nil {
			return a.usageError("submit", err)
		}
		req.DeviceIDs = append(req.DeviceIDs, ids...)
	}
	var err error
	if req.TimeoutSeconds, err = parseSeconds(o.timeout); err != nil {
		return a.usageError("submit", fmt.Errorf("--timeout: %w", err))
	}
	if req.DeliveryTimeoutSeconds, err = parseSeconds(o.deliveryTimeout); err != nil {
		return a.usageError("submit", fmt.Errorf("--delivery-timeout: %w", err))
	}
	if req.Targets, err = parseTargets(o.targets); err != nil {
		return a.usageError("submit", err)
	}
	req.IncludeOffline = o.includeOffline
	switch {
	case len(req.DeviceIDs) == 0 && len(req.Targets) == 0:
		return a.usageError("submit", errors.New("no devices: pass --devices, --devices-file or --target"))
	case len(req.DeviceIDs) > 0 && len(req.Targets) > 0:
		return a.usageError("submit", errors.New("--target names the devices: leave out --devices and --devices-file"))
	case o.includeOffline && len(req.Targets) == 0:
		return a.usageError("submit", errors.New("--include-offline needs --target"))
	case o.script == "":
		return a.usageError("submit", errors.New("no script: pass --script"))
	case o.cancelOnInterrupt && !o.wait:
		return a.usageError("submit", errors.New("--cancel-on-interrupt needs --wait"))
	}
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("submit", err)
	}
	var opts []client.SubmitOption
	if o.idemKey != "" {
		opts = append(opts, client.WithIdempotencyKey(o.idemKey))
	}
	t, err := cl.Submit(ctx, req, opts...)
	return a.created(ctx, cl, t, err, "submitted task "+idOf(t), o.wait, o.cancelOnInterrupt)
}

// created reports a task that submit or relaunch created: its id (or with --json the task),
// or, with --wait, what prints it (headline) and the task followed to its end.
func (a *app) created(ctx context.Context, cl *client.Client, t *api.Task, err error, headline string, wait, cancelOnInterrupt bool) int {
	c := &a.common
	if err != nil {
		return a.fail(ctx, err)
	}
	if !wait {
		if c.json {
			printJSON(a.stdout, t)
		} else {
			fmt.Fprintln(a.stdout, t.ID)
		}
		return ExitOK
	}
	if !c.json {
		fmt.Fprintf(a.stdout, "%s: %s on %s\n", headline, t.Request.ScriptURL, plural(t.Progress.Devices.Total, "device"))
	}
	return a.follow(ctx, cl, t.ID, followOptions{json: c.json, cancelOnInterrupt: cancelOnInterrupt})
}

// idOf is t's id, "" for no task.
func idOf(t *api.Task) string {
	if t == nil {
		return ""
	}
	return t.ID
}

// readDevices reads device ids from a file (or stdin for "-"): one a line, blank lines and
// #-comments skipped, commas allowed as separators too.
func (a *app) readDevices(name string) ([]string, error) {
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--devices-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	var ids listFlag
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		ids.Set(line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--devices-file %s: %w", name, err)
	}
	return ids, nil
}

// parseSeconds reads a timeout given in whole seconds ("90") or as a duration ("15m").
func parseSeconds(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("%q is not a positive number of seconds", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d%time.Second != 0 {
		return 0, fmt.Errorf("%q is neither whole seconds nor a duration like 15m", s)
	}
	return int(d / time.Second), nil
}
