package lambdatest

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// translateScript runs aws-sam-translator, the library `sam deploy` and CloudFormation's SAM
// transform use, on the template named by its argument and prints the CloudFormation JSON it
// generates. The functions' CodeUri becomes an S3 location, as `sam package` makes it.
const translateScript = `
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://fleetrun-artifacts/fleetrun.zip"
for resource in template["Resources"].values():
    if resource.get("Type") == "AWS::Serverless::Function":
        resource.setdefault("Properties", {}).pop("CodeUri", None)
json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout)
`

// Translate returns the CloudFormation template SAM generates from the SAM template at path,
// through aws-sam-translator (Python, which `make test` needs as it needs cfn-lint).
func Translate(t testing.TB, path string) map[string]any {
	t.Helper()
	cmd := exec.Command("python3", "-c", translateScript, path)
	// The translator makes no AWS call, but boto3 reads the profile: none, and a region.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("aws-sam-translator on %s: %v\n%s", path, err, stderr)
	}
	var cfn map[string]any
	if err := json.Unmarshal(out, &cfn); err != nil {
		t.Fatalf("aws-sam-translator's output is not JSON: %v", err)
	}
	return cfn
}
