// Command minimal is the smallest aws-lambda-go function, built like the fleetrun functions, so
// that their cold starts can be told apart from the runtime's own.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(ctx context.Context, event map[string]any) (map[string]any, error) {
		return map[string]any{"ok": true}, nil
	})
}
