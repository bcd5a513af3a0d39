package lambdatest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/dynamo"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
)

func loadTemplate(t *testing.T) *lambdatest.Template {
	t.Helper()
	tpl, err := lambdatest.LoadTemplate(filepath.Join(lambdatest.RepoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// wantFunctions are the functions PRODUCT.md names, with the GET routes that need services
// besides DynamoDB split out of StatusFunction (OutputFunction, InventoryFunction); the
// template must define exactly these, each with its directory under functions/.
var wantFunctions = map[string]string{
	"CancelFunction":    "cancel",
	"ExecutorFunction":  "executor",
	"InventoryFunction": "inventory",
	"OutputFunction":    "output",
	"ProgressFunction":  "progress",
	"StatusFunction":    "status",
	"SubmitFunction":    "submit",
	"SweeperFunction":   "sweeper",
	"WebhookFunction":   "webhook",
}

func TestTemplateFunctions(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	root := lambdatest.RepoRoot(t)
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	got := tpl.Functions()
	if len(got) != len(wantFunctions) {
		t.Errorf("template functions %v, want %d: %v", got, len(wantFunctions), wantFunctions)
	}
	for _, id := range got {
		dir, ok := wantFunctions[id]
		if !ok {
			t.Errorf("unexpected function %s", id)
			continue
		}
		checks := map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap", "Architectures": []any{"arm64"}}
		for prop, want := range checks {
			if got := tpl.FunctionProperty(id, prop); !equalJSON(got, want) {
				t.Errorf("%s %s = %v, want %v", id, prop, got, want)
			}
		}
		if bm := tpl.Resources[id].Metadata["BuildMethod"]; bm != "makefile" {
			t.Errorf("%s Metadata.BuildMethod = %v, want makefile", id, bm)
		}
		target := "build-" + id + ":\n\t$(call lambda," + dir + ")"
		if !strings.Contains(string(makefile), target) {
			t.Errorf("Makefile has no %q", target)
		}
		if _, err := os.Stat(filepath.Join(root, "functions", dir, "main.go")); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

func TestTemplateEnvironmentIsWhatTheFunctionsRead(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	refs := fakeRefs(tpl)
	common := []string{awsapp.EnvAdminPrincipals, awsapp.EnvAllowedScriptBuckets, awsapp.EnvDocumentName, awsapp.EnvEventBusName,
		awsapp.EnvLogLevel, awsapp.EnvMetricsNamespace, awsapp.EnvOutputBucket, awsapp.EnvOutputLogGroup, awsapp.EnvOwnerScope, awsapp.EnvQueueURL,
		awsapp.EnvTableName, awsapp.EnvTaskRetentionDays, awsapp.EnvWebhookQueueURL}
	for _, id := range tpl.Functions() {
		want := slices.Clone(common)
		if id == "WebhookFunction" {
			// Only the function that signs reads the secret.
			want = append(want, awsapp.EnvWebhookSecretParameter)
		}
		slices.Sort(want)
		env, err := tpl.FunctionEnvironment(id, refs)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("%s environment %v, want %v", id, keys, want)
		}
		// The configuration the template produces must load.
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		if _, err := awsapp.Load(lookup, awsapp.EnvTableName, awsapp.EnvQueueURL, awsapp.EnvAllowedScriptBuckets); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

// fakeRefs gives every parameter its default (AllowedScriptBuckets a sample) and every
// resource and attribute the tests look up a recognisable value.
func fakeRefs(tpl *lambdatest.Template) map[string]string {
	refs := map[string]string{"AWS::StackName": "fleetrun", "AllowedScriptBuckets": "example-fleetrun-scripts"}
	for name, p := range tpl.Parameters {
		if _, ok := refs[name]; !ok && p.Default != nil {
			refs[name], _ = lambdatest.ResolveString(p.Default, nil)
		}
	}
	for id := range tpl.Resources {
		refs[id] = "ref-" + id
		for _, attr := range []string{"Arn", "QueueName"} {
			refs[id+"."+attr] = "arn:aws:test:::" + id + "/" + attr
		}
	}
	return refs
}

func TestTemplateTableIsTheStoresSchema(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	table := tpl.Resources["Table"]
	if table.Type != "AWS::DynamoDB::Table" {
		t.Fatalf("Table is %q", table.Type)
	}
	got, err := lambdatest.CreateTableInput(table, "tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := dynamo.CreateTableInput("tasks")
	sortDefinitions := func(in *dynamodb.CreateTableInput) {
		slices.SortFunc(in.AttributeDefinitions, func(a, b types.AttributeDefinition) int {
			return strings.Compare(aws.ToString(a.AttributeName), aws.ToString(b.AttributeName))
		})
	}
	sortDefinitions(got)
	sortDefinitions(want)
	if !equalJSON(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Errorf("template table:\n%s\nstore's table:\n%s", gj, wj)
	}
	if ttl := dig(table.Properties, "TimeToLiveSpecification"); !equalJSON(ttl, map[string]any{"AttributeName": dynamo.TTLAttribute, "Enabled": true}) {
		t.Errorf("TimeToLiveSpecification = %v, want %s enabled", ttl, dynamo.TTLAttribute)
	}
	if pitr := dig(table.Properties, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"); pitr != true {
		t.Errorf("point-in-time recovery = %v", pitr)
	}
}

func TestTemplateQueue(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	timeout, _ := tpl.FunctionProperty("ExecutorFunction", "Timeout").(int)
	visibility, _ := dig(tpl.Resources["Queue"].Properties, "VisibilityTimeout").(int)
	if timeout <= 0 || visibility < 6*timeout {
		t.Errorf("queue visibility timeout %d s, executor timeout %d s: want at least six times", visibility, timeout)
	}
	redrive := dig(tpl.Resources["Queue"].Properties, "RedrivePolicy", "deadLetterTargetArn")
	if !equalJSON(redrive, map[string]any{"Fn::GetAtt": []any{"DeadLetterQueue", "Arn"}}) {
		t.Errorf("redrive target = %v, want the dead-letter queue", redrive)
	}
	sqsEvent := dig(tpl.Resources["ExecutorFunction"].Properties, "Events", "Queue", "Properties")
	if !equalJSON(dig(sqsEvent, "FunctionResponseTypes"), []any{"ReportBatchItemFailures"}) ||
		!equalJSON(dig(sqsEvent, "Queue"), map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}) {
		t.Errorf("executor's SQS event = %v", sqsEvent)
	}
	alarm := tpl.Resources["DeadLetterAlarm"].Properties
	if !equalJSON(dig(alarm, "Dimensions"), []any{map[string]any{"Name": "QueueName",
		"Value": map[string]any{"Fn::GetAtt": []any{"DeadLetterQueue", "QueueName"}}}}) {
		t.Errorf("the alarm does not watch the dead-letter queue: %v", dig(alarm, "Dimensions"))
	}
}

func TestTemplatePoliciesAreScoped(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	for _, id := range tpl.Functions() {
		policies, _ := tpl.Resources[id].Properties["Policies"].([]any)
		for _, p := range policies {
			statements, _ := dig(p, "Statement").([]any)
			for _, s := range statements {
				actions := dig(s, "Action")
				list, ok := actions.([]any)
				if !ok {
					list = []any{actions}
				}
				star := equalJSON(dig(s, "Resource"), "*")
				for _, a := range list {
					action, _ := a.(string)
					service, _, _ := strings.Cut(action, ":")
					if star && (service == "dynamodb" || service == "sqs" || action == "ssm:SendCommand" || action == "events:PutEvents") {
						t.Errorf("%s grants %s on every resource", id, action)
					}
					if strings.HasSuffix(action, "*") {
						t.Errorf("%s grants the wildcard action %s", id, action)
					}
				}
			}
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	refs := map[string]string{"Table": "tasks", "Queue.Arn": "arn:aws:sqs:us-east-1:123456789012:q", "AWS::StackName": "s"}
	tests := []struct {
		name    string
		in      any
		want    any
		wantErr bool
	}{
		{"ref", map[string]any{"Ref": "Table"}, "tasks", false},
		{"pseudo", map[string]any{"Ref": "AWS::Region"}, "us-east-1", false},
		{"getatt", map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}, "arn:aws:sqs:us-east-1:123456789012:q", false},
		{"sub", map[string]any{"Fn::Sub": "${AWS::StackName}-tasks/${Table}/${Queue.Arn}"}, "s-tasks/tasks/arn:aws:sqs:us-east-1:123456789012:q", false},
		{"sub with variables", map[string]any{"Fn::Sub": []any{"${A}-${Table}", map[string]any{"A": map[string]any{"Ref": "AWS::Partition"}}}}, "aws-tasks", false},
		{"join", map[string]any{"Fn::Join": []any{",", []any{"a", map[string]any{"Ref": "Table"}}}}, "a,tasks", false},
		{"nested", map[string]any{"Name": map[string]any{"Ref": "Table"}, "List": []any{1, map[string]any{"Ref": "Table"}}},
			map[string]any{"Name": "tasks", "List": []any{1, "tasks"}}, false},
		{"unknown ref", map[string]any{"Ref": "Nope"}, nil, true},
		{"if of a condition not evaluated", map[string]any{"Fn::If": []any{"C", "a", "b"}}, nil, true},
		{"if true", map[string]any{"Fn::If": []any{"Yes", map[string]any{"Ref": "Table"}, "b"}}, "tasks", false},
		{"if false", map[string]any{"Fn::If": []any{"No", "a", "b"}}, "b", false},
		{"unevaluated function", map[string]any{"Fn::Select": []any{"0", []any{"a"}}}, nil, true},
	}
	refs["Condition::Yes"], refs["Condition::No"] = "true", "false"
	for _, tt := range tests {
		got, err := lambdatest.Resolve(tt.in, refs)
		if tt.wantErr {
			if err == nil {
				t.Errorf("%s: Resolve = %v, want an error", tt.name, got)
			}
			continue
		}
		if err != nil || !equalJSON(got, tt.want) {
			t.Errorf("%s: Resolve = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}

func TestWithConditionsEvaluatesTheTemplatesConditions(t *testing.T) {
	t.Parallel()
	tpl := &lambdatest.Template{Conditions: map[string]any{
		"On":     map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "Switch"}, "true"}},
		"Off":    map[string]any{"Fn::Not": []any{map[string]any{"Condition": "On"}}},
		"Both":   map[string]any{"Fn::And": []any{map[string]any{"Condition": "On"}, map[string]any{"Condition": "Off"}}},
		"Either": map[string]any{"Fn::Or": []any{map[string]any{"Condition": "On"}, map[string]any{"Condition": "Off"}}},
	}}
	for sw, want := range map[string]map[string]string{
		"true":  {"On": "true", "Off": "false", "Both": "false", "Either": "true"},
		"false": {"On": "false", "Off": "true", "Both": "false", "Either": "true"},
	} {
		refs, err := tpl.WithConditions(map[string]string{"Switch": sw})
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range want {
			if refs["Condition::"+name] != v {
				t.Errorf("Switch=%s: %s = %q, want %s", sw, name, refs["Condition::"+name], v)
			}
		}
	}
}

func TestLoadTemplateReadsShortForms(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "t.yaml")
	src := "Resources:\n  R:\n    Type: X\n    Properties:\n      A: !Ref P\n      B: !GetAtt Q.Arn\n      C: !Sub \"${P}-x\"\n      D: !If [C, !Ref P, !Ref AWS::NoValue]\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	tpl, err := lambdatest.LoadTemplate(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"A": map[string]any{"Ref": "P"},
		"B": map[string]any{"Fn::GetAtt": []any{"Q", "Arn"}},
		"C": map[string]any{"Fn::Sub": "${P}-x"},
		"D": map[string]any{"Fn::If": []any{"C", map[string]any{"Ref": "P"}, map[string]any{"Ref": "AWS::NoValue"}}},
	}
	if got := tpl.Resources["R"].Properties; !equalJSON(got, want) {
		t.Errorf("properties = %v, want %v", got, want)
	}
}

// equalJSON compares two values by their JSON encodings, which ignores the difference between
// the SDK's pointer fields and the template's plain values.
func equalJSON(a, b any) bool {
	aj, err1 := json.Marshal(a)
	bj, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(aj) == string(bj)
}

// dig walks nested maps by key.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestTemplateScopesSendCommandToTheTargetTag evaluates the executor's SendCommand policy with
// and without TargetTagKey: it names only the configured document and the account's nodes,
// and with a tag it allows nodes only when they carry the tag with TargetTagValue.
func TestTemplateScopesSendCommandToTheTargetTag(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	p := tpl.Resources["ExecutorSendCommandPolicy"]
	if p.Type != "AWS::IAM::Policy" || !equalJSON(p.Properties["Roles"], []any{map[string]any{"Ref": "ExecutorFunctionRole"}}) {
		t.Fatalf("ExecutorSendCommandPolicy is %s for %v, want an AWS::IAM::Policy of the executor's role", p.Type, p.Properties["Roles"])
	}
	sub, _ := dig(p.Properties, "PolicyDocument", "Fn::Sub").([]any)
	if len(sub) != 2 {
		t.Fatalf("PolicyDocument is not a Fn::Sub with variables: %v", p.Properties["PolicyDocument"])
	}
	branches, _ := dig(sub[1], "TagCondition", "Fn::If").([]any)
	if len(branches) != 3 || branches[0] != "HasTargetTag" {
		t.Fatalf("TagCondition is not an Fn::If on HasTargetTag: %v", sub[1])
	}
	type statement struct {
		Sid       string
		Action    string
		Resource  []string
		Condition map[string]map[string]string
	}
	policy := func(key, value string) map[string]statement {
		t.Helper()
		refs := fakeRefs(tpl)
		refs["TargetTagKey"], refs["TargetTagValue"] = key, value
		branch := branches[2]
		if key != "" {
			branch = branches[1]
		}
		cond, err := lambdatest.ResolveString(branch, refs)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := lambdatest.ResolveString(map[string]any{"Fn::Sub": []any{sub[0], map[string]any{"TagCondition": cond}}}, refs)
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Statement []statement }
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatalf("the policy is not JSON: %v\n%s", err, doc)
		}
		out := map[string]statement{}
		for _, s := range d.Statement {
			if s.Action != "ssm:SendCommand" || slices.Contains(s.Resource, "*") {
				t.Errorf("statement %s: %s on %v", s.Sid, s.Action, s.Resource)
			}
			out[s.Sid] = s
		}
		return out
	}
	open := policy("", "")
	if len(open) != 2 || open["Nodes"].Condition != nil || open["Document"].Condition != nil ||
		!slices.Contains(open["Document"].Resource, "arn:aws:ssm:us-east-1::document/AWS-RunRemoteScript") {
		t.Errorf("without a tag: %+v", open)
	}
	scoped := policy("fleetrun", "prod fleet")
	want := map[string]map[string]string{"StringEquals": {"ssm:resourceTag/fleetrun": "prod fleet"}}
	if !equalJSON(scoped["Nodes"].Condition, want) || scoped["Document"].Condition != nil {
		t.Errorf("with a tag: nodes %+v, document %+v; want the nodes conditioned on %v", scoped["Nodes"], scoped["Document"], want)
	}
}
