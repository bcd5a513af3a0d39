// Package withssm wires SSM into a function's App: the Run Command runner (ExecutorFunction,
// ProgressFunction, SweeperFunction) and the webhook signing secret's parameter
// (WebhookFunction).
package withssm

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// Runner is the SSM runner service of awsapp: the commands are recorded in the function's
// table, and SSM's throttles are counted in its metrics.
func Runner(a *awsapp.App) {
	a.Parts.Runner = ssmrun.New(ssmrun.Config{
		API:            ssm.NewFromConfig(a.SDK, ssmrun.ObserveThrottles(a.Metrics)),
		CommandLog:     a.Store,
		Devices:        a.Store,
		OutputLogGroup: a.Config.OutputLogGroup,
		DocumentName:   a.Config.DocumentName,
		AllowedBuckets: a.Config.AllowedScriptBuckets,
		OutputBucket:   a.Config.OutputBucket,
		Logger:         a.Log,
	})
}

// Secret is the webhook secret service of awsapp: the signing secret is read, decrypted, from
// the SSM parameter WEBHOOK_SECRET_PARAMETER names, on the first delivery of each instance.
func Secret(a *awsapp.App) {
	if name := a.Config.WebhookSecretParameter; name != "" {
		client := ssm.NewFromConfig(a.SDK)
		a.Parts.Secret = func(ctx context.Context) (webhook.Secret, error) { return ReadSecret(ctx, client, name) }
	}
}

// ParameterAPI is the part of the SSM client ReadSecret uses; *ssm.Client satisfies it.
type ParameterAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// ReadSecret reads the webhook signing secret from the SSM parameter name, decrypted.
func ReadSecret(ctx context.Context, api ParameterAPI, name string) (webhook.Secret, error) {
	out, err := api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return webhook.Secret{}, fmt.Errorf("read the webhook secret from the SSM parameter %s: %w", name, err)
	}
	if out.Parameter == nil {
		return webhook.Secret{}, fmt.Errorf("the SSM parameter %s has no value", name)
	}
	secret, err := webhook.ParseSecret(aws.ToString(out.Parameter.Value))
	if err != nil {
		return webhook.Secret{}, fmt.Errorf("the SSM parameter %s: %w", name, err)
	}
	return secret, nil
}
