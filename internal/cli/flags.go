package cli

import (
	"flag"
	"fmt"
	"slices"
	"strings"
)

// common holds the flags every client command has.
type common struct {
	endpoint string
	token    string
	sigv4    bool
	region   string
	json     bool
}

// newFlagSet returns the flag set of a client command, with the common flags, writing its
// help to w. The help lists the command's positional arguments and the flags.
func (a *app) newFlagSet(name, args, about string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet("fleetrun "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&c.endpoint, "endpoint", "", "fleetrun API `URL` (default $FLEETRUN_ENDPOINT, else "+defaultEndpoint+")")
	fs.StringVar(&c.token, "token", "", "bearer `token` of the local server (default $FLEETRUN_TOKEN)")
	fs.BoolVar(&c.sigv4, "sigv4", false, "sign requests with AWS SigV4 (automatic for execute-api endpoints)")
	fs.StringVar(&c.region, "region", "", "AWS `region` for SigV4 (default $AWS_REGION, else from the endpoint)")
	fs.BoolVar(&c.json, "json", false, "print the API's JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fleetrun %s %s\n\n%s\n\nFlags:\n", name, args, about)
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nExit codes are listed by \"fleetrun --help\".")
	}
	return fs
}

// parse parses args with flags allowed before, between and after the positional arguments,
// as in "fleetrun wait ID --json"; everything after the first "--" is positional (so a flag
// whose value is "--" must be written --flag=--). It checks that there are exactly want
// positional arguments, or any number when want is negative.
func parse(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	pos = append(pos, tail...)
	if want >= 0 && len(pos) < want {
		return nil, fmt.Errorf("missing argument: want %d, got %d", want, len(pos))
	}
	if want >= 0 && len(pos) > want {
		return nil, fmt.Errorf("unexpected argument %q", pos[want])
	}
	return pos, nil
}

func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag collects a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeatFlag collects a repeatable flag whose values are kept whole, commas and all.
type repeatFlag []string

func (r *repeatFlag) String() string     { return strings.Join(*r, " ") }
func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }
