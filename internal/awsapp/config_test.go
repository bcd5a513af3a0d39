package awsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/fleetrun/fleetrun/internal/lambdahttp"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	full := map[string]string{
		EnvTableName: "tasks", EnvQueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/q",
		EnvEventBusName: "fleetrun-tasks", EnvAllowedScriptBuckets: " scripts-a, scripts-b ,,",
		EnvDocumentName: "Custom-Run", EnvTaskRetentionDays: "7", EnvLogLevel: "debug",
		EnvOutputBucket: "fleetrun-output", EnvOwnerScope: "session",
		EnvAdminPrincipals:  "arn:aws:iam::123456789012:role/Ops, arn:aws:iam::123456789012:user/carol",
		EnvMetricsNamespace: "fleetrun/prod",
	}
	with := func(changes map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for k, v := range changes {
			if v == "-" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name     string
		env      map[string]string
		required []string
		want     Config
		wantErrs []string
	}{
		{
			name: "everything set", env: full, required: []string{EnvTableName, EnvQueueURL},
			want: Config{TableName: "tasks", QueueURL: full[EnvQueueURL], EventBusName: "fleetrun-tasks",
				AllowedScriptBuckets: []string{"scripts-a", "scripts-b"}, DocumentName: "Custom-Run",
				OutputBucket: "fleetrun-output", Retention: 7 * 24 * time.Hour, LogLevel: slog.LevelDebug,
				OwnerScope:       lambdahttp.ScopeSession,
				AdminPrincipals:  []string{"arn:aws:iam::123456789012:role/Ops", "arn:aws:iam::123456789012:user/carol"},
				MetricsNamespace: "fleetrun/prod"},
		},
		{
			name: "defaults", env: map[string]string{EnvTableName: "tasks"}, required: []string{EnvTableName},
			want: Config{TableName: "tasks", DocumentName: DefaultDocumentName, Retention: 30 * 24 * time.Hour, LogLevel: slog.LevelInfo,
				OwnerScope: lambdahttp.ScopeRole, MetricsNamespace: DefaultMetricsNamespace},
		},
		{
			name: "missing and blank required variables", env: with(map[string]string{EnvTableName: "-", EnvQueueURL: "  "}),
			required: []string{EnvTableName, EnvQueueURL, EnvAllowedScriptBuckets},
			wantErrs: []string{"TABLE_NAME is required", "QUEUE_URL is required"},
		},
		{
			name: "bad values are all reported", env: with(map[string]string{EnvTaskRetentionDays: "0", EnvLogLevel: "loud", EnvOwnerScope: "team"}),
			wantErrs: []string{"TASK_RETENTION_DAYS", "LOG_LEVEL", "OWNER_SCOPE"},
		},
		{name: "retention not a number", env: with(map[string]string{EnvTaskRetentionDays: "30d"}), wantErrs: []string{"TASK_RETENTION_DAYS"}},
		{name: "log level by name, any case", env: with(map[string]string{EnvLogLevel: "WARN"}),
			want: Config{TableName: "tasks", QueueURL: full[EnvQueueURL], EventBusName: "fleetrun-tasks",
				AllowedScriptBuckets: []string{"scripts-a", "scripts-b"}, DocumentName: "Custom-Run",
				OutputBucket: "fleetrun-output", Retention: 7 * 24 * time.Hour, LogLevel: slog.LevelWarn,
				OwnerScope:       lambdahttp.ScopeSession,
				AdminPrincipals:  []string{"arn:aws:iam::123456789012:role/Ops", "arn:aws:iam::123456789012:user/carol"},
				MetricsNamespace: "fleetrun/prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			got, err := Load(lookup, tt.required...)
			if len(tt.wantErrs) > 0 {
				if err == nil {
					t.Fatalf("Load = %+v, want errors %v", got, tt.wantErrs)
				}
				for _, w := range tt.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo).With("function", "status")
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
	log.InfoContext(ctx, "in an invocation", "task_id", "01JD")
	log.DebugContext(ctx, "below the level")
	log.Info("outside any invocation")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2: %s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["aws_request_id"] != "req-1" || first["task_id"] != "01JD" || first["function"] != "status" || first["level"] != "INFO" {
		t.Errorf("first line = %v", first)
	}
	if _, ok := second["aws_request_id"]; ok {
		t.Errorf("a line outside an invocation has a request id: %v", second)
	}
}
