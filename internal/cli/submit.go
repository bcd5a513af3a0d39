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

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

func (a *app) submit(ctx context.Context, args []string) int {
	var (
		c                                  common
		devices                            listFlag
		scriptArgs                         repeatFlag
		devicesFile, script, timeout       string
		maxConcurrency, maxErrors, idemKey string
		wait, cancelOnInterrupt            bool
	)
	fs := a.newFlagSet("submit", "--devices a,b | --devices-file F --script URL [flags]",
		"Submits a task that runs the script on every device, and prints its id (or, with\n--wait, follows it to the end).", &c)
	fs.Var(&devices, "devices", "comma-separated device `ids`; may be repeated")
	fs.StringVar(&devicesFile, "devices-file", "", "`file` of device ids, one a line (# comments; - for stdin)")
	fs.StringVar(&script, "script", "", "the script's `URL`: s3://bucket/key on AWS, a path under the script root locally")
	fs.Var(&scriptArgs, "arg", "an `argument` for the script, passed as is; repeat for several")
	fs.StringVar(&timeout, "timeout", "", "how long the task may run, in `seconds` or as a duration (90, 15m)")
	fs.StringVar(&maxConcurrency, "max-concurrency", "", "devices run at once, a `number` or a percentage (10%)")
	fs.StringVar(&maxErrors, "max-errors", "", "failed devices after which the task stops, a `number` or a percentage")
	fs.StringVar(&idemKey, "idempotency-key", "", "Idempotency-Key: submitting again with the same `key` returns the same task")
	fs.BoolVar(&wait, "wait", false, "follow the task to its end, then exit as \"fleetrun --help\" lists")
	fs.BoolVar(&cancelOnInterrupt, "cancel-on-interrupt", false, "with --wait, cancel the task on Ctrl-C without asking")
	if _, err := parse(fs, args, 0); err != nil {
		return a.usageError(fs, err)
	}
	req := api.SubmitRequest{DeviceIDs: devices, ScriptURL: script, Args: scriptArgs,
		MaxConcurrency: maxConcurrency, MaxErrors: maxErrors}
	if devicesFile != "" {
		ids, err := a.readDevices(devicesFile)
		if err != nil {
			return a.usageError(fs, err)
		}
		req.DeviceIDs = append(req.DeviceIDs, ids...)
	}
	var err error
	if req.TimeoutSeconds, err = parseSeconds(timeout); err != nil {
		return a.usageError(fs, fmt.Errorf("--timeout: %w", err))
	}
	switch {
	case len(req.DeviceIDs) == 0:
		return a.usageError(fs, errors.New("no devices: pass --devices or --devices-file"))
	case script == "":
		return a.usageError(fs, errors.New("no script: pass --script"))
	case cancelOnInterrupt && !wait:
		return a.usageError(fs, errors.New("--cancel-on-interrupt needs --wait"))
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
	}
	var opts []client.SubmitOption
	if idemKey != "" {
		opts = append(opts, client.WithIdempotencyKey(idemKey))
	}
	t, err := cl.Submit(ctx, req, opts...)
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
		fmt.Fprintf(a.stdout, "submitted task %s: %s on %d devices\n", t.ID, t.Request.ScriptURL, t.Progress.Devices.Total)
	}
	return a.follow(ctx, cl, t.ID, followOptions{json: c.json, cancelOnInterrupt: cancelOnInterrupt})
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
