package lambdatest_test

// The template's operability: alarms, log groups, dead-letter queues, deletion policies and the
// dashboard. Each rule is stated over every resource of a kind, so a function, queue or rule
// added later is held to it without a change here.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/lambdatest"
	"github.com/fleetrun/fleetrun/internal/metrics"
)

// alarm is an AWS::CloudWatch::Alarm of the template, with its logical id.
type alarm struct {
	id    string
	props map[string]any
}

func alarms(tpl *lambdatest.Template) []alarm {
	var out []alarm
	for _, id := range tpl.OfType("AWS::CloudWatch::Alarm") {
		out = append(out, alarm{id, tpl.Resources[id].Properties})
	}
	return out
}

// watches reports whether a watches metric in namespace with the dimension name = value.
func (a alarm) watches(namespace, metric, dimName string, dimValue any) bool {
	return dig(a.props, "Namespace") == namespace && dig(a.props, "MetricName") == metric &&
		equalJSON(dig(a.props, "Dimensions"), []any{map[string]any{"Name": dimName, "Value": dimValue}})
}

// alarmOn returns the alarm that watches the metric, failing the test when there is none.
func alarmOn(t *testing.T, tpl *lambdatest.Template, what, namespace, metric, dimName string, dimValue any) {
	t.Helper()
	for _, a := range alarms(tpl) {
		if a.watches(namespace, metric, dimName, dimValue) {
			return
		}
	}
	t.Errorf("%s: no alarm on %s %s with %s = %v", what, namespace, metric, dimName, dimValue)
}

func ref(id string) map[string]any { return map[string]any{"Ref": id} }

func getAtt(id, attr string) map[string]any { return map[string]any{"Fn::GetAtt": []any{id, attr}} }

// getAttOf returns the resource a {"Fn::GetAtt": [id, attr]} names.
func getAttOf(v any, attr string) (string, bool) {
	ga, ok := dig(v, "Fn::GetAtt").([]any)
	if !ok || len(ga) != 2 || ga[1] != attr {
		return "", false
	}
	id, ok := ga[0].(string)
	return id, ok
}

func TestTemplateEveryFunctionHasAlarmsAndALogGroup(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	if p := tpl.Parameters["LogRetentionDays"]; p.Type != "Number" || p.Default != 30 {
		t.Errorf("LogRetentionDays = %+v, want a Number parameter with default 30", p)
	}
	for _, id := range tpl.Functions() {
		alarmOn(t, tpl, id, "AWS/Lambda", "Errors", "FunctionName", ref(id))
		alarmOn(t, tpl, id, "AWS/Lambda", "Throttles", "FunctionName", ref(id))
		group, _ := dig(tpl.Resources[id].Properties, "LoggingConfig", "LogGroup", "Ref").(string)
		lg, ok := tpl.Resources[group]
		if !ok || lg.Type != "AWS::Logs::LogGroup" {
			t.Errorf("%s: LoggingConfig.LogGroup = %q, want the Ref of a log group of the template", id, group)
			continue
		}
		if !equalJSON(dig(lg.Properties, "RetentionInDays"), ref("LogRetentionDays")) {
			t.Errorf("%s's log group %s keeps logs for %v, want LogRetentionDays", id, group, dig(lg.Properties, "RetentionInDays"))
		}
		for _, other := range tpl.Functions() {
			if other != id && equalJSON(dig(tpl.Resources[other].Properties, "LoggingConfig", "LogGroup"), ref(group)) {
				t.Errorf("%s and %s share the log group %s", id, other, group)
			}
		}
	}
}

// deadLetterQueues returns the queues the template uses as dead-letter queues: redrive
// targets, the DeadLetterConfig of rule targets and of functions' events, and the on-failure
// destinations of asynchronous invocations.
func deadLetterQueues(tpl *lambdatest.Template) []string {
	found := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, target := range []any{dig(v, "RedrivePolicy", "deadLetterTargetArn"), dig(v, "DeadLetterConfig", "Arn"),
				dig(v, "DestinationConfig", "OnFailure", "Destination")} {
				if id, ok := getAttOf(target, "Arn"); ok && tpl.Resources[id].Type == "AWS::SQS::Queue" {
					found[id] = true
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, r := range tpl.Resources {
		walk(r.Properties)
	}
	var ids []string
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func TestTemplateEveryDeadLetterQueueHasADepthAlarm(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	dlqs := deadLetterQueues(tpl)
	for _, want := range []string{"DeadLetterQueue", "ProgressEventsDeadLetterQueue", "TaskFinishedDeadLetterQueue", "SweepDeadLetterQueue"} {
		if !slices.Contains(dlqs, want) {
			t.Errorf("%s is not used as a dead-letter queue (found %v)", want, dlqs)
		}
	}
	for _, id := range dlqs {
		alarmOn(t, tpl, id, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", getAtt(id, "QueueName"))
	}
}

func TestTemplateEveryRuleTargetHasADeadLetterQueue(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	targets := 0
	for _, id := range tpl.OfType("AWS::Events::Rule") {
		list, _ := dig(tpl.Resources[id].Properties, "Targets").([]any)
		for _, target := range list {
			targets++
			if _, ok := getAttOf(dig(target, "DeadLetterConfig", "Arn"), "Arn"); !ok {
				t.Errorf("rule %s target %v has no dead-letter queue", id, dig(target, "Id"))
			}
		}
	}
	// SAM turns these events into rules whose target is the function.
	for _, id := range tpl.Functions() {
		evs, _ := dig(tpl.Resources[id].Properties, "Events").(map[string]any)
		for name, ev := range evs {
			switch dig(ev, "Type") {
			case "EventBridgeRule", "Schedule", "ScheduleV2":
				targets++
				if _, ok := getAttOf(dig(ev, "Properties", "DeadLetterConfig", "Arn"), "Arn"); !ok {
					t.Errorf("%s event %s has no dead-letter queue", id, name)
				}
			}
		}
	}
	if targets < 2 {
		t.Errorf("found %d rule targets, want at least the example rule's and ProgressFunction's", targets)
	}
}

func TestTemplateEveryConsumedQueueHasAnAgeAlarm(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	consumed := 0
	for _, fn := range tpl.Functions() {
		evs, _ := dig(tpl.Resources[fn].Properties, "Events").(map[string]any)
		for _, ev := range evs {
			if dig(ev, "Type") != "SQS" {
				continue
			}
			id, ok := getAttOf(dig(ev, "Properties", "Queue"), "Arn")
			if !ok {
				t.Errorf("%s consumes a queue the template does not define: %v", fn, dig(ev, "Properties", "Queue"))
				continue
			}
			consumed++
			alarmOn(t, tpl, fn+"'s queue "+id, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", getAtt(id, "QueueName"))
			if _, ok := getAttOf(dig(tpl.Resources[id].Properties, "RedrivePolicy", "deadLetterTargetArn"), "Arn"); !ok {
				t.Errorf("%s's queue %s has no dead-letter queue", fn, id)
			}
		}
	}
	if consumed == 0 {
		t.Error("no function consumes a queue; the executor should")
	}
}

func TestTemplateAPIAlarms(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	// A REST API's metrics carry its name; the template names it.
	name := dig(tpl.Resources["Api"].Properties, "Name")
	if !equalJSON(name, map[string]any{"Fn::Sub": "${AWS::StackName}-api"}) {
		t.Fatalf("the API's name is %v, want ${AWS::StackName}-api", name)
	}
	api := []any{map[string]any{"Name": "ApiName", "Value": name}}
	// Event streams last up to 15 minutes by design, so the latency alarm watches the
	// long-poll route, GET /tasks/{id}, not the whole API.
	longPoll := append(slices.Clone(api), map[string]any{"Name": "Stage", "Value": "v1"},
		map[string]any{"Name": "Resource", "Value": "/tasks/{id}"}, map[string]any{"Name": "Method", "Value": "GET"})
	var rate, latency bool
	for _, a := range alarms(tpl) {
		if dig(a.props, "Namespace") == "AWS/ApiGateway" && dig(a.props, "MetricName") == "Latency" &&
			dig(a.props, "ExtendedStatistic") == "p99" && equalJSON(dig(a.props, "Dimensions"), longPoll) {
			latency = true
		}
		queries, _ := dig(a.props, "Metrics").([]any)
		stats := map[string]string{} // query id → API Gateway metric
		expression := ""
		for _, q := range queries {
			id, _ := dig(q, "Id").(string)
			if m := dig(q, "MetricStat", "Metric"); dig(m, "Namespace") == "AWS/ApiGateway" && equalJSON(dig(m, "Dimensions"), api) {
				stats[id], _ = dig(m, "MetricName").(string)
			}
			if e, ok := dig(q, "Expression").(string); ok && dig(q, "ReturnData") == true {
				expression = e
			}
		}
		var errs, count string
		for id, m := range stats {
			switch m {
			case "5xx":
				errs = id
			case "Count":
				count = id
			}
		}
		if errs != "" && count != "" && strings.Contains(expression, errs+" / "+count) {
			rate = true
		}
	}
	if !rate {
		t.Error("no alarm on the API's 5xx rate (5xx / Count of the template's API)")
	}
	if !latency {
		t.Error("no alarm on the p99 latency of GET /tasks/{id}")
	}
}

// docSection matches the part of an alarm's description that names what to do.
var docSection = regexp.MustCompile(`docs/operations\.md, "([^"]+)"`)

func TestTemplateAlarmsNotifyTheTopicAndSayWhatToDo(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	doc, err := os.ReadFile(filepath.Join(lambdatest.RepoRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tpl.Parameters["AlarmTopicArn"]; !ok {
		t.Fatal("no AlarmTopicArn parameter")
	}
	topic := map[string]any{"Fn::If": []any{"HasAlarmTopic", []any{ref("AlarmTopicArn")}, ref("AWS::NoValue")}}
	all := alarms(tpl)
	if len(all) < 2*len(tpl.Functions())+5 {
		t.Errorf("%d alarms, want at least two per function and five more", len(all))
	}
	for _, a := range all {
		for _, actions := range []string{"AlarmActions", "OKActions"} {
			if !equalJSON(dig(a.props, actions), topic) {
				t.Errorf("%s %s = %v, want AlarmTopicArn when it is set", a.id, actions, dig(a.props, actions))
			}
		}
		description, _ := dig(a.props, "AlarmDescription").(string)
		m := docSection.FindStringSubmatch(description)
		if m == nil {
			t.Errorf("%s's description does not name its section of docs/operations.md: %q", a.id, description)
			continue
		}
		if !regexp.MustCompile(`(?m)^#{2,4} ` + regexp.QuoteMeta(m[1]) + `$`).Match(doc) {
			t.Errorf("%s points to docs/operations.md, %q, which has no such heading", a.id, m[1])
		}
	}
}

func TestTemplateStatefulResourcesSayWhatDeletionDoes(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	if tpl.Parameters["AllowedScriptBuckets"].Default != nil {
		t.Error("AllowedScriptBuckets has a default; it must be asked for (sam deploy --guided) or set")
	}
	for id, r := range tpl.Resources {
		switch r.Type {
		case "AWS::DynamoDB::Table", "AWS::S3::Bucket":
			// The records of tasks and their output outlive the stack.
			if r.DeletionPolicy != "Retain" || r.UpdateReplacePolicy != "Retain" {
				t.Errorf("%s (%s): DeletionPolicy %q UpdateReplacePolicy %q, want Retain for both", id, r.Type, r.DeletionPolicy, r.UpdateReplacePolicy)
			}
		case "AWS::SQS::Queue", "AWS::Logs::LogGroup":
			if r.DeletionPolicy == "" || r.UpdateReplacePolicy == "" {
				t.Errorf("%s (%s): DeletionPolicy %q UpdateReplacePolicy %q, want both set", id, r.Type, r.DeletionPolicy, r.UpdateReplacePolicy)
			}
		}
	}
}

func TestTemplateDashboardShowsEverySignal(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	dashboards := tpl.OfType("AWS::CloudWatch::Dashboard")
	if len(dashboards) != 1 {
		t.Fatalf("dashboards %v, want one", dashboards)
	}
	refs := fakeRefs(tpl)
	body, err := lambdatest.ResolveString(tpl.Resources[dashboards[0]].Properties["DashboardBody"], refs)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Widgets []struct {
			Type       string `json:"type"`
			Properties struct {
				Alarms  []string          `json:"alarms"`
				Metrics []json.RawMessage `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(body), &parsed); err != nil {
		t.Fatalf("the dashboard body is not JSON: %v\n%s", err, body)
	}
	var shown []string
	var metricRows strings.Builder
	for _, w := range parsed.Widgets {
		shown = append(shown, w.Properties.Alarms...)
		for _, m := range w.Properties.Metrics {
			metricRows.Write(m)
			metricRows.WriteByte('\n')
		}
	}
	for _, a := range alarms(tpl) {
		if !slices.Contains(shown, refs[a.id+".Arn"]) {
			t.Errorf("the dashboard does not show the alarm %s", a.id)
		}
	}
	rows := metricRows.String()
	namespace := fmt.Sprintf("fleetrun/%s", refs["AWS::StackName"])
	for _, m := range metrics.All {
		if !strings.Contains(rows, m.Name) {
			t.Errorf("the dashboard does not show the metric %s", m.Name)
		}
	}
	if !strings.Contains(rows, namespace) {
		t.Errorf("the dashboard does not read the functions' namespace %s", namespace)
	}
	for _, id := range append(tpl.Functions(), deadLetterQueues(tpl)...) {
		name := refs[id]
		if tpl.Resources[id].Type == "AWS::SQS::Queue" {
			name = refs[id+".QueueName"]
		}
		if !strings.Contains(rows, `"`+name+`"`) {
			t.Errorf("the dashboard does not show %s", id)
		}
	}
	// The functions write their metrics to the namespace the dashboard reads.
	for _, id := range tpl.Functions() {
		env, err := tpl.FunctionEnvironment(id, refs)
		if err != nil {
			t.Fatal(err)
		}
		if env["METRICS_NAMESPACE"] != namespace {
			t.Errorf("%s writes metrics to %q, the dashboard reads %q", id, env["METRICS_NAMESPACE"], namespace)
		}
	}
}
