package task_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/task"
)

// TestIDRulesMatchTheirRegularExpressions: the hand-written rules accept exactly what the
// regular expressions they name accept.
func TestIDRulesMatchTheirRegularExpressions(t *testing.T) {
	t.Parallel()
	inputs := []string{"", "a", "dev-1", "web.01:eu_west", "a/b", "a b", "é", "..", strings.Repeat("x", 128), strings.Repeat("x", 129),
		"i-0123456789abcdef0", "mi-0123456789abcdef0", "i-01234567", "i-0123456", "i-0123456789abcdef01", "i-0123456789ABCDEF0",
		"x-0123456789abcdef0", "mi-", "i-", "ii-01234567", "i-0123456g", "mi-0123456789abcdef", "\x00", "i-01234567\n"}
	for _, rule := range []task.IDRule{task.LocalDeviceID, task.ManagedNodeID} {
		re := regexp.MustCompile(rule.String())
		for _, s := range inputs {
			if got, want := rule.MatchString(s), re.MatchString(s); got != want {
				t.Errorf("%s: %q → %v, the expression says %v", rule, s, got, want)
			}
		}
	}
}
