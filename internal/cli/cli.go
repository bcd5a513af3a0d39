// Package cli is the fleetrun command: `fleetrun serve` for the local API, and the subcommands
// that drive an API, local or deployed, from a terminal or a script.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/fleetrun/fleetrun/client"
	"github.com/fleetrun/fleetrun/internal/serve"
)

// Exit codes of the fleetrun command. Scripts depend on them: they never change meaning.
const (
	// ExitOK: the command did what was asked; a waited-for task had every device succeed.
	ExitOK = 0
	// ExitTaskFailed: a waited-for task finished with failed, timed-out or undeliverable
	// devices, or failed as a whole (maxErrors exceeded, or it could not run).
	ExitTaskFailed = 1
	// ExitUsage: bad flags or arguments, or the API refused the request (a 4xx answer, such as
	// an invalid submit or an unknown task); the problem is printed.
	ExitUsage = 2
	// ExitCancelled: a waited-for task was cancelled or timed out.
	ExitCancelled = 3
	// ExitUnavailable: the server failed (5xx) or could not be reached.
	ExitUnavailable = 4
	// ExitInterrupted: interrupted (Ctrl-C) while waiting, and the task was left running.
	ExitInterrupted = 130
)

// Main runs the fleetrun command with args (the words after the program name) and returns its
// exit code. ctx should end on SIGINT: a wait that is interrupted then offers to cancel the
// task, which it does on a context of its own, since ctx is over by then.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, env: env,
		now: time.Now, isTerminal: isTerminal, cancelWait: time.Minute}
	return a.main(ctx, args)
}

// app is one run of the command, with the process's streams, environment and clock.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) string
	now            func() time.Time
	// isTerminal reports whether a stream is an interactive terminal.
	isTerminal func(any) bool
	// cancelWait bounds how long an interrupted wait follows the cancellation it asked for.
	cancelWait time.Duration
	// clientOptions are added to every client; tests use them to speed up retries.
	clientOptions []client.Option
}

// command is one subcommand: run gets the words after its name.
type command struct {
	name    string
	args    string
	summary string
	run     func(a *app, ctx context.Context, args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"serve", "[flags]", "run the fleetrun API on this machine (fleetrun serve --help)",
			func(a *app, ctx context.Context, args []string) int {
				return serve.Main(ctx, args, a.stdout, a.stderr, a.env)
			}},
		{"submit", "--devices a,b | --devices-file F --script URL [flags]", "submit a task; --wait to follow it to the end", (*app).submit},
		{"status", "ID", "show a task", (*app).status},
		{"wait", "ID", "follow a task to the end, showing progress", (*app).wait},
		{"cancel", "ID", "cancel a task; --wait to follow it until it stops", (*app).cancel},
		{"ls", "[--status S] [--limit N]", "list your tasks, newest first", (*app).list},
		{"devices", "ID [--status S,...]", "list a task's devices: state, exit code, output", (*app).devices},
		{"output", "ID DEVICE [--stderr]", "print a device's full output", (*app).output},
	}
}

func (a *app) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.usage(a.stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			return a.main(ctx, []string{args[1], "--help"})
		}
		a.usage(a.stdout)
		return ExitOK
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(a, ctx, args[1:])
		}
	}
	fmt.Fprintf(a.stderr, "fleetrun: unknown command %q\n\n", name)
	a.usage(a.stderr)
	return ExitUsage
}

func (a *app) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: fleetrun <command> [arguments] [flags]

fleetrun runs a script on a fleet of devices through the fleetrun API, follows it while it
runs, and reports per-device results. "fleetrun serve" runs the API on this machine.

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %-52s\n           %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprint(w, `
Flags of every command but serve (flags may come before or after the arguments):
  --endpoint URL   the API (default $FLEETRUN_ENDPOINT, else http://127.0.0.1:8080)
  --token TOKEN    bearer token of the local server (default $FLEETRUN_TOKEN)
  --sigv4          sign requests with AWS SigV4 for API Gateway, with the standard AWS
                   credential chain; automatic for *.execute-api.*.amazonaws.com endpoints
  --region REGION  AWS region for --sigv4 (default $AWS_REGION, else from the endpoint)
  --json           print the API's JSON instead of text

Run "fleetrun <command> --help" for a command's own flags.

Waiting (submit --wait, wait, cancel --wait) shows a progress bar on a terminal and
timestamped progress lines otherwise, then a summary naming every failed device. Ctrl-C
while waiting asks whether to cancel the task (or cancels it with --cancel-on-interrupt;
without a terminal to ask on, it stops waiting and leaves the task running).

Exit codes:
  0    success; for a waited-for task, every device succeeded
  1    the task finished with failed, timed-out or undeliverable devices, or failed
  2    usage or input error: bad flags, or the API refused the request (4xx); the
       problem is printed with each invalid field
  3    the task was cancelled or timed out
  4    the server failed (5xx) or could not be reached
  130  interrupted while waiting; the task was left running
Commands that do not wait exit 0, 2 or 4.
`)
}

// isTerminal reports whether f is a terminal: an *os.File on one.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// usageError reports a usage problem and returns ExitUsage, or ExitOK for --help.
func (a *app) usageError(fs *flag.FlagSet, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "%s: %v\n", fs.Name(), err)
	}
	fmt.Fprintf(a.stderr, "Run \"%s --help\" for usage.\n", fs.Name())
	return ExitUsage
}
