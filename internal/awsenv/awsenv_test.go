package awsenv

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/fleetrun/fleetrun/internal/awsretry"
)

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadTakesRegionAndKeysFromTheEnvironment(t *testing.T) {
	t.Parallel()
	cfg, err := Load(env(map[string]string{EnvRegion: "eu-west-1", EnvAccessKeyID: "AKID", EnvSecretAccessKey: "secret",
		EnvSessionToken: "token", EnvAccountID: "123456789012"}), awsretry.Options{MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" || cfg.Retryer().MaxAttempts() != 3 || cfg.HTTPClient == nil || cfg.BaseEndpoint != nil {
		t.Errorf("region %q, retryer %d attempts, client %v, endpoint %v", cfg.Region, cfg.Retryer().MaxAttempts(), cfg.HTTPClient, cfg.BaseEndpoint)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil || creds.AccessKeyID != "AKID" || creds.SecretAccessKey != "secret" || creds.SessionToken != "token" ||
		creds.AccountID != "123456789012" {
		t.Errorf("credentials %+v, %v", creds, err)
	}

	cfg, err = Load(env(map[string]string{EnvDefaultRegion: "us-west-2", EnvAccessKeyID: "a", EnvSecretAccessKey: "b"}), awsretry.Options{})
	if err != nil || cfg.Region != "us-west-2" {
		t.Errorf("AWS_DEFAULT_REGION: %q, %v", cfg.Region, err)
	}
}

func TestLoadRefusesAnIncompleteEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no region", map[string]string{EnvAccessKeyID: "a", EnvSecretAccessKey: "b"}, EnvRegion},
		{"no credentials", map[string]string{EnvRegion: "us-east-1", EnvAccessKeyID: "a"}, ErrNoCredentials.Error()},
		{"container URL elsewhere", map[string]string{EnvRegion: "us-east-1", EnvContainerFullURI: "http://192.0.2.1/creds"}, "only loopback"},
		{"CA bundle missing", map[string]string{EnvRegion: "us-east-1", EnvAccessKeyID: "a", EnvSecretAccessKey: "b",
			EnvCABundle: filepath.Join(t.TempDir(), "none.pem")}, EnvCABundle},
	} {
		if _, err := Load(env(tc.env), awsretry.Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

// TestLoadFallsBackToTheContainerEndpoint: without keys, credentials come from the container
// endpoint, asked on first use (not while loading), with the token of the token file.
func TestLoadFallsBackToTheContainerEndpoint(t *testing.T) {
	t.Parallel()
	var asked int
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked++
		auth = r.Header.Get("Authorization")
		_ = json.NewEncoder(w).Encode(map[string]string{"AccessKeyId": "ASIA", "SecretAccessKey": "s", "Token": "t",
			"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(env(map[string]string{EnvRegion: "us-east-1", EnvContainerFullURI: srv.URL + "/creds",
		EnvContainerToken: "from-env", EnvContainerTokenFile: tokenFile}), awsretry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if asked != 0 {
		t.Fatalf("loading asked the endpoint %d times; it should wait for the first request", asked)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil || creds.AccessKeyID != "ASIA" || creds.SessionToken != "t" {
		t.Fatalf("credentials %+v, %v", creds, err)
	}
	if _, err := cfg.Credentials.Retrieve(t.Context()); err != nil || asked != 1 || auth != "from-file" {
		t.Errorf("asked %d times with Authorization %q, %v; want once, with the file's token", asked, auth, err)
	}
}

// TestLoadHonoursServiceEndpoints: a service client goes to AWS_ENDPOINT_URL_<SERVICE> when it is
// set, else to AWS_ENDPOINT_URL, as with the SDK's own loader. The SDK client reads the process
// environment itself to choose, so this test sets it.
func TestLoadHonoursServiceEndpoints(t *testing.T) {
	hits := map[string]int{}
	serve := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[name]++
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			_, _ = io.WriteString(w, `{"TableNames":[]}`)
		}))
	}
	general, dynamo := serve("general"), serve("dynamodb")
	defer general.Close()
	defer dynamo.Close()
	t.Setenv(EnvEndpointURL, general.URL)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "")
	list := func() {
		t.Helper()
		cfg, err := Load(env(map[string]string{EnvRegion: "us-east-1", EnvAccessKeyID: "a", EnvSecretAccessKey: "b",
			EnvEndpointURL: os.Getenv(EnvEndpointURL), "AWS_ENDPOINT_URL_DYNAMODB": os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")}),
			awsretry.Options{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dynamodb.NewFromConfig(cfg).ListTables(context.Background(), &dynamodb.ListTablesInput{}); err != nil {
			t.Fatal(err)
		}
	}
	list()
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamo.URL)
	list()
	if hits["general"] != 1 || hits["dynamodb"] != 1 {
		t.Errorf("requests by endpoint: %v; want one to AWS_ENDPOINT_URL, then one to AWS_ENDPOINT_URL_DYNAMODB", hits)
	}

	cfg, err := Load(env(map[string]string{EnvRegion: "us-east-1", EnvAccessKeyID: "a", EnvSecretAccessKey: "b",
		EnvEndpointURL: general.URL, "AWS_ENDPOINT_URL_DYNAMODB": dynamo.URL, EnvIgnoreConfiguredURLs: "true"}), awsretry.Options{})
	if err != nil || cfg.BaseEndpoint != nil || len(cfg.ConfigSources) != 0 {
		t.Errorf("with %s the configuration still has endpoints: %v %v %v", EnvIgnoreConfiguredURLs, cfg.BaseEndpoint, cfg.ConfigSources, err)
	}
}

// TestLoadTrustsTheCABundle: with AWS_CA_BUNDLE the client trusts its certificates (an
// emulator's own), and only them.
func TestLoadTrustsTheCABundle(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	post := func(cfg aws.Config) (string, error) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
		req.ContentLength = 2
		resp, err := cfg.HTTPClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	base := map[string]string{EnvRegion: "us-east-1", EnvAccessKeyID: "a", EnvSecretAccessKey: "b"}
	plain, err := Load(env(base), awsretry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := post(plain); err == nil {
		t.Error("without the bundle the emulator's certificate was trusted")
	}
	base[EnvCABundle] = bundle
	trusting, err := Load(env(base), awsretry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := post(trusting); err != nil || got != "{}" {
		t.Errorf("with the bundle: %q, %v", got, err)
	}
}

func TestNoCredentialsIsASentinel(t *testing.T) {
	t.Parallel()
	_, err := Load(env(map[string]string{EnvRegion: "us-east-1"}), awsretry.Options{})
	if !errors.Is(err, ErrNoCredentials) {
		t.Errorf("Load = %v, want ErrNoCredentials", err)
	}
}
