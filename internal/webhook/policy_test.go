package webhook

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// fakeResolver answers from a table, as DNS would.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range f[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, errors.New("no such host")
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	dns := fakeResolver{
		"hooks.example.com": {"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
		"internal.example":  {"10.1.2.3"},
		"mixed.example":     {"93.184.215.14", "192.168.1.1"},
		"meta.example":      {"169.254.169.254"},
		"ipv6meta.example":  {"fd00:ec2::254"},
		"loop.example":      {"127.0.0.1"},
		"localhost":         {"127.0.0.1", "::1"},
	}
	tests := []struct {
		url           string
		allowLoopback bool
		want          string // "" accepts; otherwise a part of the error
	}{
		{"https://hooks.example.com/fleet?x=1", false, ""},
		{"https://93.184.215.14:8443/", false, ""},
		{"http://hooks.example.com/", false, "must be an https URL"},
		{"http://hooks.example.com/", true, "http is allowed only to the loopback interface"},
		{"http://169.254.169.254/", false, "169.254.169.254 is a link-local address"},
		{"http://10.0.0.1/", false, "10.0.0.1 is a private address"},
		{"http://10.0.0.1/", true, "10.0.0.1 is a private address"},
		{"https://internal.example/", false, "internal.example resolves to 10.1.2.3, a private address"},
		{"https://mixed.example/", false, "resolves to 192.168.1.1, a private address"},
		{"https://meta.example/", false, "link-local"},
		{"https://ipv6meta.example/", false, "private"},
		{"https://loop.example/", false, "resolves to 127.0.0.1, a loopback address"},
		{"https://localhost:9/", false, "a loopback address"},
		{"http://localhost:9/hook", true, ""},
		{"http://127.0.0.1:9/hook", true, ""},
		{"https://[::1]:9/hook", true, ""},
		{"https://[::ffff:10.0.0.1]/", false, "private"},
		{"https://[64:ff9b::a9fe:a9fe]/", false, "carries 169.254.169.254"},
		{"https://[2002:a00:1::]/", false, "carries 10.0.0.1"},
		{"https://100.100.100.200/", false, "reserved"},
		{"https://0.0.0.0/", false, "not a unicast address"},
		{"https://239.1.1.1/", false, "not a unicast address"},
		{"https://nowhere.example/", false, "does not resolve"},
		{"ftp://hooks.example.com/", false, "must be an https URL, not \"ftp\""},
		{"https://user:pw@hooks.example.com/", false, "user name or password"},
		{"https://hooks.example.com/#frag", false, "fragment"},
		{"/relative", false, "absolute https URL"},
		{"https://", false, "absolute https URL"},
	}
	for _, tt := range tests {
		p := Policy{AllowLoopback: tt.allowLoopback, Resolver: dns}
		err := p.CheckURL(tt.url)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckURL(%q, loopback %v) = %v, want it allowed", tt.url, tt.allowLoopback, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckURL(%q, loopback %v) = %v, want an error with %q", tt.url, tt.allowLoopback, err, tt.want)
		}
	}
}
