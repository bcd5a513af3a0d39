package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// common holds the flags every client command has. They are the root's persistent flags, so
// they may come before the command or anywhere after it: "fleetrun --endpoint URL ls" and
// "fleetrun ls --endpoint URL" are the same.
type common struct {
	endpoint string
	token    string
	sigv4    bool
	region   string
	json     bool
}

func (c *common) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&c.endpoint, "endpoint", "", "the fleetrun API `URL` (default $FLEETRUN_ENDPOINT, else "+defaultEndpoint+")")
	f.StringVar(&c.token, "token", "", "bearer `token` of the local server (default $FLEETRUN_TOKEN)")
	f.BoolVar(&c.sigv4, "sigv4", false, "sign requests with AWS SigV4 for API Gateway, with the standard AWS credential\nchain; automatic for *.execute-api.*.amazonaws.com endpoints")
	f.StringVar(&c.region, "region", "", "AWS `region` for --sigv4 (default $AWS_REGION, else from the endpoint)")
	f.BoolVar(&c.json, "json", false, "print the API's JSON instead of text")
}

// listFlag collects a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Type() string   { return "list" }

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
func (r *repeatFlag) Type() string       { return "string" }
func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }
