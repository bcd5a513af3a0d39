// Package awsapp wires fleetrun's AWS home for the Lambda functions: configuration from the
// environment, the SDK configuration (awsenv), the DynamoDB store and the engine, and the
// handlers each function hands to lambda.Start. The other AWS services are Services, one
// package each under awsapp (withsqs, withssm, withevents, withs3): a function's main names
// those it calls, so that its binary links, and its cold start initialises, no other SDK
// client. Everything else lives here, where it can be tested.
package awsapp

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/internal/httpapi"
	"github.com/fleetrun/fleetrun/internal/lambdahttp"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// The environment variables the functions read. The SAM template sets them from its resources
// and parameters; the SDK's own AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> point the same
// binaries at emulators.
const (
	EnvTableName            = "TABLE_NAME"
	EnvQueueURL             = "QUEUE_URL"
	EnvEventBusName         = "EVENT_BUS_NAME"
	EnvAllowedScriptBuckets = "ALLOWED_SCRIPT_BUCKETS"
	EnvDocumentName         = "DOCUMENT_NAME"
	EnvTaskRetentionDays    = "TASK_RETENTION_DAYS"
	EnvLogLevel             = "LOG_LEVEL"
	EnvOutputBucket         = "OUTPUT_BUCKET"
	EnvOwnerScope           = "OWNER_SCOPE"
	EnvAdminPrincipals      = "ADMIN_PRINCIPALS"
	EnvMetricsNamespace     = "METRICS_NAMESPACE"
	// EnvOutputLogGroup names the CloudWatch Logs group of the commands' output; set when the
	// stack's CommandOutputToCloudWatch is true, empty otherwise.
	EnvOutputLogGroup = "OUTPUT_LOG_GROUP"
	// EnvWebhookQueueURL is the webhook queue; tasks may ask for webhooks (notify) when it is
	// set.
	EnvWebhookQueueURL = "WEBHOOK_QUEUE_URL"
	// EnvWebhookSecretParameter names the SSM SecureString parameter that holds the webhook
	// signing secret (whsec_…); only WebhookFunction, which signs, reads it.
	EnvWebhookSecretParameter = "WEBHOOK_SECRET_PARAMETER"
	// EnvAllowHTTPWebhooks ("true") lets webhooks go to the loopback interface, over http
	// too, as `fleetrun serve --allow-http-webhooks` does: for a receiver on the same host as
	// the functions, which on AWS there never is. The template does not set it.
	EnvAllowHTTPWebhooks = "ALLOW_HTTP_WEBHOOKS"
	// EnvEventStreamKeepAlive is how long an event stream stays silent before it sends a
	// comment, as a Go duration ("15s", the default and the longest).
	EnvEventStreamKeepAlive = "EVENT_STREAM_KEEPALIVE"
)

// Defaults for the optional settings.
const (
	DefaultDocumentName  = "AWS-RunRemoteScript"
	DefaultRetentionDays = 30
	// DefaultMetricsNamespace is the CloudWatch namespace of the metrics when none is set;
	// the template sets one per stack, fleetrun/<stack name>.
	DefaultMetricsNamespace = "fleetrun"
)

// Config is the functions' configuration.
type Config struct {
	// TableName is the DynamoDB table of tasks.
	TableName string
	// QueueURL is the executor's SQS queue.
	QueueURL string
	// EventBusName is the bus for "Task Finished" events; empty means the default bus.
	EventBusName string
	// AllowedScriptBuckets are the S3 buckets a scriptUrl may name.
	AllowedScriptBuckets []string
	// DocumentName is the SSM document that downloads and runs the script.
	DocumentName string
	// OutputBucket is the S3 bucket SSM writes every device's full output to, and the status
	// function serves it from; empty keeps no output beyond the devices' inline copies.
	OutputBucket string
	// Retention is how long a finished task is kept.
	Retention time.Duration
	// OwnerScope says which part of an IAM caller's identity owns its tasks (role by default).
	OwnerScope lambdahttp.Scope
	// AdminPrincipals may read and cancel the tasks of every owner (see lambdahttp.Identity).
	AdminPrincipals []string
	// LogLevel is the level of the JSON log.
	LogLevel slog.Level
	// MetricsNamespace is the CloudWatch namespace of the embedded-metric-format lines.
	MetricsNamespace string
	// OutputLogGroup is the CloudWatch Logs group SSM sends the commands' output to, which a
	// followed output reads; empty when the stack does not send output there.
	OutputLogGroup string
	// WebhookQueueURL is the webhook queue; empty turns webhooks off.
	WebhookQueueURL string
	// WebhookSecretParameter names the SSM parameter of the webhook secret, which Setup reads
	// into WebhookSecret once per cold start.
	WebhookSecretParameter string
	// WebhookSecret signs webhooks; zero in every function but WebhookFunction.
	WebhookSecret webhook.Secret
	// AllowHTTPWebhooks lets webhooks go to the loopback interface (see EnvAllowHTTPWebhooks).
	AllowHTTPWebhooks bool
	// EventStreamKeepAlive is the longest silence of an event stream; httpapi's default when
	// zero.
	EventStreamKeepAlive time.Duration
}

// LookupFunc reads one environment variable; os.LookupEnv is the production one, and tests pass
// a map's lookup instead.
type LookupFunc func(key string) (string, bool)

// Load reads the configuration through lookup. The variables named in required must be set and
// not empty; every problem is reported at once, so a misconfigured function says everything
// that is wrong in its first log line.
func Load(lookup LookupFunc, required ...string) (Config, error) {
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}
	var errs []error
	for _, key := range required {
		if get(key) == "" {
			errs = append(errs, fmt.Errorf("%s is required", key))
		}
	}
	cfg := Config{
		TableName:        get(EnvTableName),
		QueueURL:         get(EnvQueueURL),
		EventBusName:     get(EnvEventBusName),
		DocumentName:     get(EnvDocumentName),
		OutputBucket:     get(EnvOutputBucket),
		Retention:        DefaultRetentionDays * 24 * time.Hour,
		MetricsNamespace: get(EnvMetricsNamespace),
		OutputLogGroup:   get(EnvOutputLogGroup),

		WebhookQueueURL:        get(EnvWebhookQueueURL),
		WebhookSecretParameter: get(EnvWebhookSecretParameter),
	}
	if cfg.DocumentName == "" {
		cfg.DocumentName = DefaultDocumentName
	}
	if cfg.MetricsNamespace == "" {
		cfg.MetricsNamespace = DefaultMetricsNamespace
	}
	cfg.AllowedScriptBuckets = list(get(EnvAllowedScriptBuckets))
	cfg.AdminPrincipals = list(get(EnvAdminPrincipals))
	scope, err := lambdahttp.ParseScope(get(EnvOwnerScope))
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvOwnerScope, err))
	}
	cfg.OwnerScope = scope
	if s := get(EnvTaskRetentionDays); s != "" {
		days, err := strconv.Atoi(s)
		if err != nil || days < 1 || days > 3650 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number of days from 1 to 3650", EnvTaskRetentionDays, s))
		} else {
			cfg.Retention = time.Duration(days) * 24 * time.Hour
		}
	}
	if s := get(EnvLogLevel); s != "" {
		if err := cfg.LogLevel.UnmarshalText([]byte(s)); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLogLevel, s))
		}
	}
	if s := get(EnvAllowHTTPWebhooks); s != "" {
		if cfg.AllowHTTPWebhooks, err = strconv.ParseBool(s); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", EnvAllowHTTPWebhooks, s))
		}
	}
	if s := get(EnvEventStreamKeepAlive); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second || d > httpapi.DefaultKeepAlive {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration from 1s to %s", EnvEventStreamKeepAlive, s, httpapi.DefaultKeepAlive))
		}
		cfg.EventStreamKeepAlive = d
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("awsapp: configuration: %w", err)
	}
	return cfg, nil
}

// list splits a comma-separated value, dropping blanks.
func list(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
