package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/fleetrun/fleetrun/client"
)

// defaultEndpoint is where `fleetrun serve` listens by default.
const defaultEndpoint = "http://127.0.0.1:8080"

// connect returns a client of the endpoint the flags and environment name, authenticated as
// they say: a bearer token, or SigV4 with the standard AWS credential chain (environment,
// shared config and credentials files, SSO, container and instance roles).
func (a *app) connect(ctx context.Context, c *common) (*client.Client, error) {
	endpoint := first(c.endpoint, a.env("FLEETRUN_ENDPOINT"), defaultEndpoint)
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--endpoint %q is not an http(s) URL", endpoint)
	}
	opts := []client.Option{client.WithUserAgent("fleetrun-cli")}
	token := bearer(first(c.token, a.env("FLEETRUN_TOKEN")))
	sigv4 := c.sigv4 || (executeAPIRegion(u.Hostname()) != "" && c.token == "")
	switch {
	case sigv4 && c.token != "":
		return nil, errors.New("--sigv4 and --token cannot be used together")
	case sigv4:
		region := first(c.region, a.env("AWS_REGION"), a.env("AWS_DEFAULT_REGION"), executeAPIRegion(u.Hostname()))
		var loadOpts []func(*config.LoadOptions) error
		if region != "" {
			loadOpts = append(loadOpts, config.WithRegion(region))
		}
		cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
		if err != nil {
			return nil, fmt.Errorf("load AWS configuration: %w", err)
		}
		if cfg.Region == "" {
			return nil, errors.New("--sigv4 needs a region: pass --region or set AWS_REGION")
		}
		opts = append(opts, client.WithSigV4(cfg.Region, cfg.Credentials))
	case token != "":
		opts = append(opts, client.WithToken(token))
	}
	return client.New(endpoint, append(opts, a.clientOptions...)...)
}

// executeAPIRegion returns the region of an API Gateway host, such as eu-west-1 for
// abc123.execute-api.eu-west-1.amazonaws.com, or "" for any other host.
func executeAPIRegion(host string) string {
	parts := strings.Split(strings.ToLower(host), ".")
	n := len(parts)
	if n == 5 && parts[1] == "execute-api" && parts[3] == "amazonaws" && parts[4] == "com" {
		return parts[2]
	}
	return ""
}

// first returns the first non-empty string.
func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// bearer is the secret to send for a token from --token or FLEETRUN_TOKEN: the whole value,
// trimmed, "=" and all. `fleetrun serve` reads FLEETRUN_TOKEN the same way, as the secret of its
// "default" owner, so one FLEETRUN_TOKEN serves the server and the client alike.
func bearer(token string) string {
	return strings.TrimSpace(token)
}
