package lambdatest_test

// The template's REST API: its routes against openapi.yaml, the streamed event stream, the
// answers API Gateway gives itself, and its throttling.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
)

// apiEvents returns the template's API events: "METHOD /path" → the function and the event's
// properties.
func apiEvents(t *testing.T, tpl *lambdatest.Template) map[string]struct {
	fn    string
	props any
} {
	t.Helper()
	out := map[string]struct {
		fn    string
		props any
	}{}
	for _, id := range tpl.Functions() {
		evs, _ := dig(tpl.Resources[id].Properties, "Events").(map[string]any)
		for name, ev := range evs {
			switch dig(ev, "Type") {
			case "Api":
			case "HttpApi":
				t.Errorf("%s event %s is on an HTTP API; the API is a REST API", id, name)
				continue
			default:
				continue
			}
			route := fmt.Sprintf("%v %v", strings.ToUpper(fmt.Sprint(dig(ev, "Properties", "Method"))), dig(ev, "Properties", "Path"))
			if other, dup := out[route]; dup {
				t.Errorf("%s is routed to both %s and %s", route, other.fn, id)
			}
			out[route] = struct {
				fn    string
				props any
			}{id, dig(ev, "Properties")}
		}
	}
	return out
}

// readers are the GET routes served by a function of their own rather than StatusFunction,
// because they call services besides DynamoDB, which StatusFunction then does not link.
var readers = map[string]string{
	"/tasks/{id}/devices/{deviceId}/output": "OutputFunction",
	"/devices":                              "InventoryFunction",
}

// TestTemplateRoutesEveryOperation holds the REST API's routes to openapi.yaml: every operation
// of the contract reaches a function (POST to submit, DELETE to cancel, a device's output to
// OutputFunction, the inventory to InventoryFunction, every other GET to status), every path of the contract (and any other path) has an ANY route to the status function,
// which answers 405 or 404 as `fleetrun serve` does, and the template routes nothing else.
func TestTemplateRoutesEveryOperation(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	data, err := os.ReadFile(filepath.Join(lambdatest.RepoRoot(t), "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var contract struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &contract); err != nil {
		t.Fatal(err)
	}
	a := tpl.Resources["Api"]
	if a.Type != "AWS::Serverless::Api" || dig(a.Properties, "Auth", "DefaultAuthorizer") != "AWS_IAM" ||
		dig(a.Properties, "Auth", "InvokeRole") != "NONE" || dig(a.Properties, "EndpointConfiguration", "Type") != "REGIONAL" {
		t.Errorf("Api is %s with %v, want a regional REST API with AWS_IAM by default, invoking functions under their own policies",
			a.Type, a.Properties)
	}
	want := map[string]string{"ANY /": "StatusFunction", "ANY /{proxy+}": "StatusFunction"}
	for path, ops := range contract.Paths {
		want["ANY "+path] = "StatusFunction"
		for method := range ops {
			switch method = strings.ToUpper(method); method {
			case "GET":
				want[method+" "+path] = readers[path]
				if want[method+" "+path] == "" {
					want[method+" "+path] = "StatusFunction"
				}
			case "POST":
				want[method+" "+path] = "SubmitFunction"
			case "DELETE":
				want[method+" "+path] = "CancelFunction"
			case "PUT", "PATCH", "HEAD", "OPTIONS":
				t.Errorf("openapi.yaml has %s %s, which no function serves", method, path)
			}
		}
	}
	got := map[string]string{}
	for route, ev := range apiEvents(t, tpl) {
		got[route] = ev.fn
		if !equalJSON(dig(ev.props, "RestApiId"), map[string]any{"Ref": "Api"}) {
			t.Errorf("%s of %s is not on the template's API", route, ev.fn)
		}
		// Only the health check may leave the API's default IAM authorization.
		if auth := dig(ev.props, "Auth"); auth != nil && dig(ev.props, "Path") != "/healthz" {
			t.Errorf("%s overrides the API's authorization: %v", route, auth)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("template routes:\n%v\nwant:\n%v", got, want)
	}
}

// TestTemplateStreamsWhatTheFunctionsStream holds the template's streamed routes to the ones
// the functions' adapter streams (awsapp.StreamedRoutes): a route streamed on one side only
// would answer API Gateway in a format it does not expect.
func TestTemplateStreamsWhatTheFunctionsStream(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	var streamed []string
	for route, ev := range apiEvents(t, tpl) {
		if dig(ev.props, "ResponseTransferMode") != "RESPONSE_STREAM" {
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		if want := readers[path]; method != "GET" || (ev.fn != "StatusFunction" && ev.fn != want) || dig(ev.props, "TimeoutInMillis") != 900000 {
			t.Errorf("%s is streamed by %s with timeout %v, want GET by the function that reads it for 15 minutes", route, ev.fn, dig(ev.props, "TimeoutInMillis"))
		}
		if timeout := tpl.FunctionProperty(ev.fn, "Timeout"); timeout != 900 {
			t.Errorf("%s streams %s with a timeout of %v, want 900 s, as long as API Gateway streams", ev.fn, route, timeout)
		}
		streamed = append(streamed, path)
	}
	slices.Sort(streamed)
	if !slices.Equal(streamed, awsapp.StreamedRoutes) {
		t.Errorf("the template streams %v, the functions stream %v", streamed, awsapp.StreamedRoutes)
	}
}

// gatewayProblems are the responses API Gateway gives itself that the template must turn into
// problems, with the status and type each must carry.
var gatewayProblems = map[string]struct {
	status int
	typ    string
}{
	"DEFAULT_4XX":                  {400, api.ProblemMalformed},
	"DEFAULT_5XX":                  {500, api.ProblemInternal},
	"MISSING_AUTHENTICATION_TOKEN": {401, api.ProblemUnauthorized},
	"INVALID_SIGNATURE":            {401, api.ProblemUnauthorized},
	"EXPIRED_TOKEN":                {401, api.ProblemUnauthorized},
	"UNAUTHORIZED":                 {401, api.ProblemUnauthorized},
	"ACCESS_DENIED":                {403, api.ProblemForbidden},
	"WAF_FILTERED":                 {403, api.ProblemForbidden},
	"RESOURCE_NOT_FOUND":           {404, api.ProblemNotFound},
	"REQUEST_TOO_LARGE":            {413, api.ProblemTooLarge},
	"UNSUPPORTED_MEDIA_TYPE":       {415, api.ProblemUnsupportedMedia},
	"THROTTLED":                    {429, api.ProblemThrottled},
	"QUOTA_EXCEEDED":               {429, api.ProblemThrottled},
	"BAD_REQUEST_BODY":             {400, api.ProblemMalformed},
	"BAD_REQUEST_PARAMETERS":       {400, api.ProblemMalformed},
	"INTEGRATION_FAILURE":          {502, api.ProblemUnavailable},
	"INTEGRATION_TIMEOUT":          {504, api.ProblemUnavailable},
}

// TestTemplateGatewayResponsesAreProblems renders every GatewayResponse the way API Gateway
// does (its $context variables replaced) and reads it as an RFC 9457 problem: the type, the
// status it is sent with, a title, the request id, and the headers a problem of that kind
// needs.
func TestTemplateGatewayResponsesAreProblems(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	responses, _ := dig(tpl.Resources["Api"].Properties, "GatewayResponses").(map[string]any)
	for name := range responses {
		if _, ok := gatewayProblems[name]; !ok {
			t.Errorf("GatewayResponses has %s, which this test does not know", name)
		}
	}
	context := strings.NewReplacer("$context.error.messageString", `"Forbidden \"quoted\""`, "$context.requestId", "req-123")
	for name, want := range gatewayProblems {
		r, ok := responses[name]
		if !ok {
			t.Errorf("GatewayResponses has no %s", name)
			continue
		}
		if status := dig(r, "StatusCode"); status != want.status {
			t.Errorf("%s: status %v, want %d", name, status, want.status)
		}
		headers, _ := dig(r, "ResponseParameters", "Headers").(map[string]any)
		if headers["Content-Type"] != "'"+api.MediaProblem+"'" || headers[api.HeaderRequestID] != "context.requestId" {
			t.Errorf("%s: headers %v, want Content-Type %s and X-Request-Id from the request id", name, headers, api.MediaProblem)
		}
		switch want.status {
		case 401:
			if headers["WWW-Authenticate"] != "'AWS4-HMAC-SHA256'" {
				t.Errorf("%s: no WWW-Authenticate naming SigV4: %v", name, headers)
			}
		case 429:
			if v, _ := headers["Retry-After"].(string); v == "" {
				t.Errorf("%s: no Retry-After: %v", name, headers)
			}
		}
		body, _ := dig(r, "ResponseTemplates", "application/json").(string)
		var p api.Problem
		dec := json.NewDecoder(strings.NewReader(context.Replace(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Errorf("%s: the body does not render as a problem: %v\n%s", name, err, body)
			continue
		}
		if p.Type != want.typ || p.Status != want.status || p.Title == "" || p.Detail == "" || p.RequestID != "req-123" {
			t.Errorf("%s renders as %+v, want type %s, status %d, a title, a detail and the request id", name, p, want.typ, want.status)
		}
	}
}

// TestTemplateThrottlesTheStage checks that the stage's rate and burst are template
// parameters with defaults, applied to every method, so that API Gateway answers 429 (the
// THROTTLED problem, with Retry-After) before any function runs.
func TestTemplateThrottlesTheStage(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	settings, _ := dig(tpl.Resources["Api"].Properties, "MethodSettings").([]any)
	if len(settings) != 1 {
		t.Fatalf("MethodSettings %v, want one for every method", settings)
	}
	s := settings[0]
	if dig(s, "ResourcePath") != "/*" || dig(s, "HttpMethod") != "*" ||
		!equalJSON(dig(s, "ThrottlingRateLimit"), ref("ApiThrottleRateLimit")) ||
		!equalJSON(dig(s, "ThrottlingBurstLimit"), ref("ApiThrottleBurstLimit")) {
		t.Errorf("MethodSettings %v, want every method throttled by ApiThrottleRateLimit and ApiThrottleBurstLimit", s)
	}
	for _, name := range []string{"ApiThrottleRateLimit", "ApiThrottleBurstLimit"} {
		p := tpl.Parameters[name]
		if n, ok := p.Default.(int); p.Type != "Number" || !ok || n < 1 {
			t.Errorf("%s = %+v, want a Number parameter with a positive default", name, p)
		}
	}
}

// TestTranslatedTemplateStreamsTheEventStreams translates template.yaml with aws-sam-translator
// into the CloudFormation SAM deploys, and reads what it generates for the API: the event
// streams' integrations invoke the function with InvokeWithResponseStream
// (…/response-streaming-invocations) in STREAM mode, every other route the ordinary
// …/invocations, and the gateway responses and the binary media types reach the API.
func TestTranslatedTemplateStreamsTheEventStreams(t *testing.T) {
	t.Parallel()
	cfn := lambdatest.Translate(t, filepath.Join(lambdatest.RepoRoot(t), "template.yaml"))
	resources, _ := cfn["Resources"].(map[string]any)
	body := dig(resources, "Api", "Properties", "Body")
	paths, _ := dig(body, "paths").(map[string]any)
	if len(paths) == 0 {
		t.Fatalf("the translated API has no paths: %v", dig(resources, "Api"))
	}
	for path, ops := range paths {
		for method, op := range ops.(map[string]any) {
			integration := dig(op, "x-amazon-apigateway-integration")
			uri, _ := dig(integration, "uri", "Fn::Sub").(string)
			streamed := slices.Contains(awsapp.StreamedRoutes, path) && method == "get"
			switch {
			case streamed && (!strings.HasSuffix(uri, "/response-streaming-invocations") || dig(integration, "responseTransferMode") != "STREAM"):
				t.Errorf("GET %s: integration %v, want the streaming invocation URI in STREAM mode", path, integration)
			case !streamed && (!strings.HasSuffix(uri, "/invocations") || strings.HasSuffix(uri, "/response-streaming-invocations")):
				t.Errorf("%s %s: integration URI %q, want a buffered invocation", method, path, uri)
			}
		}
	}
	responses, _ := dig(body, "x-amazon-apigateway-gateway-responses").(map[string]any)
	if len(responses) != len(gatewayProblems) || dig(responses, "THROTTLED", "statusCode") != "429" {
		t.Errorf("the translated API has %d gateway responses (THROTTLED %v), want %d", len(responses), dig(responses, "THROTTLED"), len(gatewayProblems))
	}
	if types := dig(body, "x-amazon-apigateway-binary-media-types"); !equalJSON(types, []any{"*/*"}) {
		t.Errorf("binary media types %v, want */*", types)
	}
	var throttled bool
	for _, r := range resources {
		if dig(r, "Type") == "AWS::ApiGateway::Stage" {
			settings, _ := dig(r, "Properties", "MethodSettings").([]any)
			throttled = len(settings) == 1 && equalJSON(dig(settings[0], "ThrottlingRateLimit"), ref("ApiThrottleRateLimit"))
		}
	}
	if !throttled {
		t.Error("the translated stage is not throttled by ApiThrottleRateLimit")
	}
}
