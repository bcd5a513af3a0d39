// Package awsenv builds the AWS SDK configuration of fleetrun's functions from their
// environment alone, the way the Lambda runtime hands it over, without config.LoadDefaultConfig.
//
// LoadDefaultConfig reads the shared configuration files, resolves profiles and links the
// clients of every credential source it knows (STS, SSO, SSO OIDC, sign-in, the instance
// metadata service), whose package initialisation alone costs a Lambda function several
// milliseconds of every cold start. A function needs none of that: Lambda sets the region and
// the function role's credentials in the environment (or, with SnapStart, the container
// credentials endpoint). Load keeps the standard chain's order for the sources a function can
// have: credentials in the environment first, then the container endpoint. Nothing is fetched
// while loading; the container endpoint is asked on the first request, and its answer cached.
//
// What else the standard loader honours and fleetrun relies on is kept: AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE> (the tests point the functions at emulators with them),
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, and AWS_CA_BUNDLE (whose certificates replace the
// system's roots, as the SDK's loader does). Every client gets awsretry's retryer and an HTTP
// client wrapped in awsretry.BufferBodies.
package awsenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"

	"github.com/fleetrun/fleetrun/internal/awsretry"
)

// The environment variables Load reads, as the SDK names them.
const (
	EnvRegion               = "AWS_REGION"
	EnvDefaultRegion        = "AWS_DEFAULT_REGION"
	EnvAccessKeyID          = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey      = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken         = "AWS_SESSION_TOKEN"
	EnvAccountID            = "AWS_ACCOUNT_ID"
	EnvContainerRelativeURI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
	EnvContainerFullURI     = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvContainerToken       = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
	EnvContainerTokenFile   = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
	EnvEndpointURL          = "AWS_ENDPOINT_URL"
	EnvIgnoreConfiguredURLs = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
	EnvCABundle             = "AWS_CA_BUNDLE"
)

// containerEndpoint is where a relative container credentials URI points (ECS, and Lambda
// with SnapStart).
const containerEndpoint = "http://169.254.170.2"

// LookupFunc reads one environment variable; os.LookupEnv in production.
type LookupFunc func(key string) (string, bool)

// ErrNoCredentials is returned when the environment names no credentials: neither keys nor a
// container credentials endpoint.
var ErrNoCredentials = errors.New("awsenv: no credentials in the environment: set " + EnvAccessKeyID + " and " +
	EnvSecretAccessKey + ", or " + EnvContainerRelativeURI + " or " + EnvContainerFullURI)

// Load returns the SDK configuration the environment read through lookup describes, with
// awsretry.New(o) as every client's retryer. It makes no network call.
func Load(lookup LookupFunc, o awsretry.Options) (aws.Config, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	cfg := aws.Config{
		Region:  get(EnvRegion),
		Retryer: func() aws.Retryer { return awsretry.New(o) },
	}
	if cfg.Region == "" {
		cfg.Region = get(EnvDefaultRegion)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("awsenv: no region: set %s", EnvRegion)
	}
	client, err := httpClient(get(EnvCABundle))
	if err != nil {
		return aws.Config{}, err
	}
	cfg.HTTPClient = awsretry.BufferBodies(client)
	if !isTrue(get(EnvIgnoreConfiguredURLs)) {
		if base := get(EnvEndpointURL); base != "" {
			cfg.BaseEndpoint = aws.String(base)
		}
		// Each service client looks its own AWS_ENDPOINT_URL_<SERVICE> up in ConfigSources.
		cfg.ConfigSources = []any{serviceEndpoints(lookup)}
	}
	creds, err := credentialsFrom(get, cfg)
	if err != nil {
		return aws.Config{}, err
	}
	cfg.Credentials = aws.NewCredentialsCache(creds)
	return cfg, nil
}

// FromEnvironment is Load with os.LookupEnv: how the functions load their configuration, and
// the tests theirs.
func FromEnvironment(o awsretry.Options) (aws.Config, error) {
	return Load(os.LookupEnv, o)
}

// credentialsFrom picks the first source the environment names: keys, then the container
// endpoint.
func credentialsFrom(get func(string) string, cfg aws.Config) (aws.CredentialsProvider, error) {
	if id, secret := get(EnvAccessKeyID), get(EnvSecretAccessKey); id != "" && secret != "" {
		p := credentials.NewStaticCredentialsProvider(id, secret, get(EnvSessionToken))
		p.Value.AccountID = get(EnvAccountID)
		return p, nil
	}
	endpoint := get(EnvContainerFullURI)
	if rel := get(EnvContainerRelativeURI); rel != "" {
		endpoint = containerEndpoint + rel
	} else if endpoint != "" {
		if err := checkContainerURL(endpoint); err != nil {
			return nil, err
		}
	}
	if endpoint == "" {
		return nil, ErrNoCredentials
	}
	token, tokenFile := get(EnvContainerToken), get(EnvContainerTokenFile)
	return endpointcreds.New(endpoint, func(eo *endpointcreds.Options) {
		eo.HTTPClient = cfg.HTTPClient
		eo.Retryer = cfg.Retryer()
		eo.AuthorizationToken = token
		if tokenFile != "" {
			// Read on every refresh, as the SDK does: the platform rotates the file.
			eo.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return "", fmt.Errorf("awsenv: read the container authorization token: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		}
	}), nil
}

// checkContainerURL applies the SDK's rule to a full container credentials URL: over plain
// HTTP only a loopback address or the ECS and EKS credential addresses may serve credentials.
func checkContainerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("awsenv: %s=%q is not a URL", EnvContainerFullURI, raw)
	}
	if u.Scheme != "http" {
		return nil
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() == "localhost" || ip != nil && (ip.IsLoopback() || ip.Equal(net.IPv4(169, 254, 170, 2)) ||
		ip.Equal(net.IPv4(169, 254, 170, 23)) || ip.Equal(net.ParseIP("fd00:ec2::23"))) {
		return nil
	}
	return fmt.Errorf("awsenv: %s=%q: over http only loopback or the ECS and EKS credential addresses are allowed", EnvContainerFullURI, raw)
}

// httpClient is the SDK's default client, trusting only the certificates in the PEM file
// caBundle when one is named.
func httpClient(caBundle string) (aws.HTTPClient, error) {
	client := awshttp.NewBuildableClient()
	if caBundle == "" {
		return client, nil
	}
	pem, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("awsenv: %s: %w", EnvCABundle, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("awsenv: %s=%s holds no PEM certificate", EnvCABundle, caBundle)
	}
	return client.WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.RootCAs = roots
	}), nil
}

// serviceEndpoints answers a service client's question for its configured endpoint from
// AWS_ENDPOINT_URL_<SERVICE>, the service's SDK id upper-cased with spaces as underscores
// ("AWS_ENDPOINT_URL_DYNAMODB"). Its method is the one the SDK's clients look for in
// aws.Config.ConfigSources.
type serviceEndpoints LookupFunc

// GetServiceBaseEndpoint returns the endpoint configured for the service sdkID, if any.
func (s serviceEndpoints) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	v, _ := s(EnvEndpointURL + "_" + strings.ReplaceAll(strings.ToUpper(sdkID), " ", "_"))
	v = strings.TrimSpace(v)
	return v, v != "", nil
}

func isTrue(v string) bool { return strings.EqualFold(v, "true") }
