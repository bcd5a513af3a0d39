package lambdahttp

import (
	"context"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// callerRequest is a request whose IAM authorization identified principal ("" for none).
func callerRequest(t *testing.T, principal string) *events.APIGatewayProxyRequest {
	t.Helper()
	ev := gatewayEvent()
	ev.RequestContext.Identity.UserArn = principal
	return &ev
}

func TestIdentityOwnerByScope(t *testing.T) {
	t.Parallel()
	const (
		session  = "arn:aws:sts::123456789012:assumed-role/Ops/alice"
		session2 = "arn:aws:sts::123456789012:assumed-role/Ops/bob"
		user     = "arn:aws:iam::123456789012:user/ci/deployer"
		china    = "arn:aws-cn:sts::210987654321:assumed-role/Ops/carol"
	)
	tests := []struct {
		scope     Scope
		principal string
		want      string
	}{
		{ScopeSession, session, session},
		{ScopeRole, session, "arn:aws:sts::123456789012:assumed-role/Ops"},
		{ScopeRole, session2, "arn:aws:sts::123456789012:assumed-role/Ops"},
		{ScopeRole, user, user},
		{ScopeRole, china, "arn:aws-cn:sts::210987654321:assumed-role/Ops"},
		{ScopeAccount, session, "arn:aws:iam::123456789012:root"},
		{ScopeAccount, user, "arn:aws:iam::123456789012:root"},
		// A principal that is not an IAM ARN (a JWT subject) is its own owner in every scope.
		{ScopeAccount, "user-42", "user-42"},
	}
	for _, tt := range tests {
		r, err := NewRequest(context.Background(), *callerRequest(t, tt.principal))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Identity{Scope: tt.scope}.Owner(r)
		if err != nil || got != tt.want {
			t.Errorf("%s owner of %s = %q, %v; want %q", tt.scope, tt.principal, got, err, tt.want)
		}
	}
	r, _ := NewRequest(context.Background(), *callerRequest(t, ""))
	if _, err := (Identity{Scope: ScopeRole}).Owner(r); err == nil {
		t.Error("a request without an identity has an owner")
	}
}

func TestIdentityAdmin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		admins    []string
		principal string
		want      bool
	}{
		{nil, "arn:aws:sts::123456789012:assumed-role/Ops/alice", false},
		// A role's IAM ARN, with or without its path, covers every session of the role.
		{[]string{"arn:aws:iam::123456789012:role/Ops"}, "arn:aws:sts::123456789012:assumed-role/Ops/alice", true},
		{[]string{"arn:aws:iam::123456789012:role/platform/Ops"}, "arn:aws:sts::123456789012:assumed-role/Ops/bob", true},
		{[]string{" arn:aws:sts::123456789012:assumed-role/Ops"}, "arn:aws:sts::123456789012:assumed-role/Ops/bob", true},
		// A session ARN covers that session only.
		{[]string{"arn:aws:sts::123456789012:assumed-role/Ops/alice"}, "arn:aws:sts::123456789012:assumed-role/Ops/bob", false},
		{[]string{"arn:aws:iam::123456789012:user/carol"}, "arn:aws:iam::123456789012:user/carol", true},
		// Another role, or the same role name in another account, is not an administrator.
		{[]string{"arn:aws:iam::123456789012:role/Ops"}, "arn:aws:sts::123456789012:assumed-role/Dev/dave", false},
		{[]string{"arn:aws:iam::123456789012:role/Ops"}, "arn:aws:sts::999999999999:assumed-role/Ops/erin", false},
		{[]string{"arn:aws:iam::123456789012:root"}, "arn:aws:iam::123456789012:user/anyone", true},
	}
	for _, tt := range tests {
		r, err := NewRequest(context.Background(), *callerRequest(t, tt.principal))
		if err != nil {
			t.Fatal(err)
		}
		if got := (Identity{Scope: ScopeRole, Admins: tt.admins}).Admin(r); got != tt.want {
			t.Errorf("admins %v, caller %s: Admin = %v, want %v", tt.admins, tt.principal, got, tt.want)
		}
	}
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Scope{"": ScopeRole, "role": ScopeRole, "session": ScopeSession, "account": ScopeAccount} {
		if got, err := ParseScope(in); err != nil || got != want {
			t.Errorf("ParseScope(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseScope("team"); err == nil {
		t.Error("ParseScope(team) succeeded")
	}
}
