package lambdahttp

import (
	"fmt"
	"net/http"
	"strings"
)

// Scope says which part of an IAM caller's identity owns the tasks it submits: callers that
// share it see and cancel each other's tasks, and nobody else does.
type Scope string

const (
	// ScopeSession makes the caller's full ARN the owner: for a role, the session
	// (arn:aws:sts::123456789012:assumed-role/ROLE/SESSION), so callers that assume the same role
	// under different session names have tasks of their own.
	ScopeSession Scope = "session"
	// ScopeRole makes an assumed role's ARN without the session name the owner
	// (arn:aws:sts::123456789012:assumed-role/ROLE), so a team that shares a role shares its
	// tasks. An IAM user's or federated user's ARN is its own owner.
	ScopeRole Scope = "role"
	// ScopeAccount makes the caller's account the owner (arn:aws:iam::123456789012:root): every
	// caller of the account shares every task.
	ScopeAccount Scope = "account"
)

// Scopes lists the scopes, ScopeRole (the default) first.
func Scopes() []Scope { return []Scope{ScopeRole, ScopeSession, ScopeAccount} }

// ParseScope returns the scope named s; "" is ScopeRole.
func ParseScope(s string) (Scope, error) {
	if s == "" {
		return ScopeRole, nil
	}
	for _, sc := range Scopes() {
		if string(sc) == s {
			return sc, nil
		}
	}
	return "", fmt.Errorf("owner scope %q: want role, session or account", s)
}

// Identity turns the identity API Gateway passes in a request into httpapi's Owner and Admin:
// the IAM principal's ARN where the route uses IAM authorization, or the token's subject where
// it uses a JWT authorizer (which Scope leaves as it is).
type Identity struct {
	Scope Scope
	// Admins are the principals that may read and cancel the tasks of every owner: IAM user or
	// role ARNs (arn:aws:iam::123456789012:role/Ops matches every session of the role Ops,
	// whatever its path), assumed-role ARNs with or without the session, or an account's root
	// ARN, which makes every caller of that account an administrator.
	Admins []string
}

// Owner is httpapi's Owner on Lambda: the part of the caller's identity that Scope names.
// ErrNoIdentity makes httpapi answer 401.
func (id Identity) Owner(r *http.Request) (string, error) {
	principal, err := Owner(r)
	if err != nil {
		return "", err
	}
	a, ok := parseARN(principal)
	if !ok {
		return principal, nil
	}
	switch id.Scope {
	case ScopeAccount:
		return a.root(), nil
	case ScopeSession:
		return principal, nil
	}
	if role, ok := a.assumedRole(); ok {
		return role, nil
	}
	return principal, nil
}

// Admin is httpapi's Admin on Lambda: whether one of the names of the caller is in Admins.
func (id Identity) Admin(r *http.Request) bool {
	principal, err := Owner(r)
	if err != nil || len(id.Admins) == 0 {
		return false
	}
	names := []string{principal}
	if a, ok := parseARN(principal); ok {
		names = append(names, a.root())
		if role, ok := a.assumedRole(); ok {
			names = append(names, role, a.roleARN())
		}
	}
	for _, admin := range id.Admins {
		admin = normalizeRole(strings.TrimSpace(admin))
		for _, n := range names {
			if admin != "" && admin == n {
				return true
			}
		}
	}
	return false
}

// arn is an IAM or STS principal ARN: arn:PARTITION:SERVICE::ACCOUNT:RESOURCE.
type arn struct {
	partition, service, account, resource string
}

func parseARN(s string) (arn, bool) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[4] == "" || (parts[2] != "iam" && parts[2] != "sts") {
		return arn{}, false
	}
	return arn{partition: parts[1], service: parts[2], account: parts[4], resource: parts[5]}, true
}

func (a arn) root() string {
	return fmt.Sprintf("arn:%s:iam::%s:root", a.partition, a.account)
}

// assumedRole is an assumed-role session's ARN without the session name.
func (a arn) assumedRole() (string, bool) {
	rest, ok := strings.CutPrefix(a.resource, "assumed-role/")
	role, _, hasSession := strings.Cut(rest, "/")
	if a.service != "sts" || !ok || !hasSession || role == "" {
		return "", false
	}
	return fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s", a.partition, a.account, role), true
}

// roleARN is the IAM ARN of an assumed-role session's role, without its path, which session
// ARNs do not carry.
func (a arn) roleARN() string {
	rest, _ := strings.CutPrefix(a.resource, "assumed-role/")
	role, _, _ := strings.Cut(rest, "/")
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", a.partition, a.account, role)
}

// normalizeRole drops the path of an IAM role ARN (arn:aws:iam::1:role/team/Ops becomes
// arn:aws:iam::1:role/Ops), so that it compares with roleARN.
func normalizeRole(s string) string {
	a, ok := parseARN(s)
	rest, isRole := strings.CutPrefix(a.resource, "role/")
	if !ok || a.service != "iam" || !isRole {
		return s
	}
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", a.partition, a.account, rest[strings.LastIndex(rest, "/")+1:])
}
