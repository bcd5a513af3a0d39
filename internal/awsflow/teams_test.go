package awsflow

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/awsapp"
)

// The callers of the teams test: two sessions of the role Ops, an administrator, and a
// session of another role.
const (
	opsAlice = "arn:aws:sts::123456789012:assumed-role/Ops/alice"
	opsBob   = "arn:aws:sts::123456789012:assumed-role/Ops/bob"
	admin    = "arn:aws:sts::123456789012:assumed-role/Platform/carol"
	dev      = "arn:aws:sts::123456789012:assumed-role/Dev/dave"
)

// apiCall invokes an API function's handler as API Gateway does (a REST API proxy event), for
// caller (an IAM ARN), and decodes the JSON answer into out when it is not nil.
func apiCall(t *testing.T, h func(context.Context, events.APIGatewayProxyRequest) (any, error),
	caller, method, path, body string, out any) int {
	t.Helper()
	ev := events.APIGatewayProxyRequest{Resource: "/{proxy+}", Path: path, HTTPMethod: method, Body: body,
		Headers: map[string]string{"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json"},
		RequestContext: events.APIGatewayProxyRequestContext{DomainName: "abc123.execute-api.us-east-1.amazonaws.com", Stage: "v1",
			Path: "/v1" + path, HTTPMethod: method, Identity: events.APIGatewayRequestIdentity{UserArn: caller}}}
	out0, err := h(t.Context(), ev)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, caller, err)
	}
	resp, ok := out0.(events.APIGatewayProxyResponse)
	if !ok {
		t.Fatalf("%s %s: the handler answered with %T", method, path, out0)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal([]byte(resp.Body), out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, resp.Body, err)
		}
	}
	return resp.StatusCode
}

// TestTeamsShareTasksByRole submits a task as one session of a role through the API functions'
// handler, configured as the template configures them. With OwnerScope role, another session
// of the same role reads and lists it, while with OwnerScope session it does not exist for
// that session; an administrator (AdminPrincipals names its role) cancels it; a caller of
// another role gets 404 throughout.
func TestTeamsShareTasksByRole(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	role := awsapp.New(f.config(t, map[string]string{awsapp.EnvAdminPrincipals: "arn:aws:iam::123456789012:role/platform/Platform"}),
		f.sdk, f.log, nil).HTTP()
	session := awsapp.New(f.config(t, map[string]string{awsapp.EnvOwnerScope: "session"}), f.sdk, f.log, nil).HTTP()

	var tk api.Task
	body := `{"deviceIds":["i-0123456789abcdef0"],"scriptUrl":"` + scriptURL + `"}`
	if code := apiCall(t, role, opsAlice, http.MethodPost, "/tasks", body, &tk); code != http.StatusAccepted {
		t.Fatalf("submit: %d", code)
	}
	path := "/tasks/" + tk.ID
	if code := apiCall(t, role, opsBob, http.MethodGet, path, "", nil); code != http.StatusOK {
		t.Errorf("under role, another session of the role reads the task: %d, want 200", code)
	}
	var list api.TaskList
	if apiCall(t, role, opsBob, http.MethodGet, "/tasks", "", &list); len(list.Items) != 1 || list.Items[0].ID != tk.ID {
		t.Errorf("under role, another session of the role lists %+v, want the task", list.Items)
	}
	if code := apiCall(t, session, opsBob, http.MethodGet, path, "", nil); code != http.StatusNotFound {
		t.Errorf("under session, another session of the role reads the task: %d, want 404", code)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if code := apiCall(t, role, dev, m, path, "", nil); code != http.StatusNotFound {
			t.Errorf("%s by a caller of another role: %d, want 404", m, code)
		}
	}
	var cancelled api.Task
	if code := apiCall(t, role, admin, http.MethodDelete, path, "", &cancelled); code != http.StatusOK || cancelled.Status != api.StatusCancelled {
		t.Errorf("the administrator's cancel: %d %s, want 200 cancelled", code, cancelled.Status)
	}
	if got := f.task(t, tk.ID); got.Owner != "arn:aws:sts::123456789012:assumed-role/Ops" {
		t.Errorf("the task's owner is %q, want the role without the session", got.Owner)
	}
}
