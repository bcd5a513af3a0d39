// Package cli is the fleetrun command: `fleetrun serve` for the local API, and the subcommands
// that drive an API, local or deployed, from a terminal or a script. It is built on cobra, for
// the habits of other Go command-line tools: flags anywhere on the line, --help and --version,
// shell completion.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fleetrun/fleetrun/client"
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
		now: time.Now, isTerminal: isTerminal, termWidth: termWidth, cancelWait: time.Minute}
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
	// termWidth is the width in columns of a terminal stream, 0 when it is unknown.
	termWidth func(any) int
	// cancelWait bounds how long an interrupted wait follows the cancellation it asked for.
	cancelWait time.Duration
	// clientOptions are added to every client; tests use them to speed up retries.
	clientOptions []client.Option
	// common holds the flags every client command has, wherever they are on the line.
	common common
	// code is the exit code of the command that ran.
	code int
}

func (a *app) main(ctx context.Context, args []string) int {
	root := a.newRoot()
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root.SetArgs(args)
	// Every error cobra returns is about the command line (an unknown command or flag, a
	// wrong number of arguments): the commands report their own outcome in a.code.
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(a.stderr, "%s: %v\n", cmd.CommandPath(), err)
		fmt.Fprintf(a.stderr, "Run \"%s --help\" for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return a.code
}

// newRoot builds the command tree for one run.
func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "fleetrun",
		Short: "Run a script on a fleet of devices through the fleetrun API",
		Long: `fleetrun runs a script on a fleet of devices through the fleetrun API, follows it while it
runs, and reports per-device results. "fleetrun serve" runs the API on this machine.`,
		Example: `  fleetrun serve
  fleetrun submit --devices web-1,web-2 --script hello.sh --wait
  fleetrun --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com ls --status running`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a command, say how to use it, on stderr, as a usage error.
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(a.stderr)
			_ = cmd.Usage()
			return errors.New("no command given")
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	a.common.register(root)
	root.AddGroup(&cobra.Group{ID: "tasks", Title: "Commands:"})
	for _, c := range []*cobra.Command{
		a.serveCommand(), a.submitCommand(), a.statusCommand(), a.waitCommand(), a.cancelCommand(),
		a.listCommand(), a.devicesCommand(), a.outputCommand(), a.relaunchCommand(), a.inventoryCommand(), a.uiCommand(),
	} {
		c.GroupID = "tasks"
		root.AddCommand(c)
	}
	root.AddCommand(a.versionCommand())
	return root
}

// usageTemplate is every command's usage: the command line, its commands or its flags, the
// global flags, and what waiting shows and what the exit codes mean.
const usageTemplate = `Usage: {{if .HasAvailableSubCommands}}{{.CommandPath}} <command> [arguments] [flags]{{else}}{{.UseLine}}{{end}}
{{- if .HasExample}}

Examples:
{{.Example}}{{end}}
{{- if .HasAvailableSubCommands}}{{range $group := .Groups}}

{{.Title}}{{range $.Commands}}{{if (and (eq .GroupID $group.ID) .IsAvailableCommand)}}
  {{rpad .Name .NamePadding}} {{.Short}}{{end}}{{end}}{{end}}

Other commands:{{range .Commands}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding}} {{.Short}}{{end}}{{end}}{{end}}
{{- if .HasAvailableLocalFlags}}

{{if .HasParent}}Flags{{else}}Flags of every command but serve (before or after the command){{end}}:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}
{{- if .HasAvailableInheritedFlags}}

Flags of every command but serve (before or after the command):
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}
{{- if .HasAvailableSubCommands}}

Run "{{.CommandPath}} <command> --help" for a command's own flags.{{end}}

Waiting (submit --wait, relaunch --wait, wait, cancel --wait) shows a progress bar on a terminal and
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
`

// command builds a client command: use names it and its arguments, which args checks;
// run is its body, returning the exit code.
func (a *app) command(use, short, long string, args cobra.PositionalArgs, run func(ctx context.Context, args []string) int) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  args,
		RunE: func(cmd *cobra.Command, pos []string) error {
			a.code = run(cmd.Context(), pos)
			return nil
		},
	}
}

// exactArgs wants exactly n positional arguments.
func exactArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return fmt.Errorf("missing argument: want %d, got %d", n, len(args))
		case len(args) > n:
			return fmt.Errorf("unexpected argument %q", args[n])
		}
		return nil
	}
}

func (a *app) serveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the fleetrun API on this machine (fleetrun serve --help)",
		// serve parses its own flags, which the client commands' do not concern.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			a.code = a.serve(cmd.Context(), args)
			return nil
		},
	}
}

// isTerminal reports whether f is a terminal: an *os.File on one.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// termWidth is the width of the terminal f is on, 0 when it cannot be told.
func termWidth(f any) int {
	file, ok := f.(*os.File)
	if !ok {
		return 0
	}
	w, _, err := term.GetSize(int(file.Fd()))
	if err != nil {
		return 0
	}
	return w
}

// usageError reports a usage problem of cmd and returns ExitUsage.
func (a *app) usageError(cmd string, err error) int {
	fmt.Fprintf(a.stderr, "fleetrun %s: %v\n", cmd, err)
	fmt.Fprintf(a.stderr, "Run \"fleetrun %s --help\" for usage.\n", cmd)
	return ExitUsage
}
