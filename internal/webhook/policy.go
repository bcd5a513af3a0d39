package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Resolver looks host names up; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which webhook URLs fleetrun calls. The zero value is AWS's: https only, to
// public addresses only.
type Policy struct {
	// AllowLoopback lets URLs reach the loopback interface (127.0.0.0/8, ::1), over http too:
	// `fleetrun serve --allow-http-webhooks`, for receivers on the same machine. Private,
	// link-local and metadata addresses stay refused.
	AllowLoopback bool
	// Resolver resolves host names at submit time; net.DefaultResolver when nil.
	Resolver Resolver
}

// resolveTimeout bounds the lookup of a URL's host at submit time.
const resolveTimeout = 5 * time.Second

// ErrRefused marks an address or URL the policy refuses.
var ErrRefused = errors.New("refused by the webhook policy")

// CheckURL returns an error, meant for the caller who submitted it, when raw is not a URL the
// policy lets fleetrun post to: it must be an absolute http(s) URL without credentials or a
// fragment, its host must resolve, and every address it resolves to must be allowed. http is
// allowed only to loopback hosts, with AllowLoopback. The address is checked before the
// scheme, so that the answer names the deeper reason.
func (p Policy) CheckURL(raw string) error {
	u, host, err := parseURL(raw)
	if err != nil {
		return err
	}
	addrs, err := p.resolve(host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		a = a.Unmap()
		if err := p.checkAddr(a); err != nil {
			if a.String() == host {
				return fmt.Errorf("%s is %w", host, err)
			}
			return fmt.Errorf("%s resolves to %s, %w", host, a, err)
		}
	}
	return p.checkScheme(u, addrs)
}

// parseURL checks the shape of a webhook URL and returns it with its host (brackets removed).
func parseURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, "", errors.New("not a URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, "", errors.New("must be an absolute https URL with a host")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, "", fmt.Errorf("must be an https URL, not %q", u.Scheme)
	case u.User != nil:
		return nil, "", errors.New("must not carry a user name or password: receivers verify the webhook-signature instead")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, "", errors.New("must not have a fragment")
	}
	return u, strings.ToLower(u.Hostname()), nil
}

// checkScheme allows https, and http only with AllowLoopback to a host whose every address is
// loopback.
func (p Policy) checkScheme(u *url.URL, addrs []netip.Addr) error {
	if u.Scheme == "https" {
		return nil
	}
	if !p.AllowLoopback {
		return errors.New("must be an https URL")
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return errors.New("must be an https URL: http is allowed only to the loopback interface")
		}
	}
	return nil
}

// resolve returns the addresses of host: the host itself when it is an IP address.
func (p Policy) resolve(host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil, fmt.Errorf("the host %s does not resolve", host)
	}
	return addrs, nil
}

// blocked are ranges no webhook may reach beyond those netip classifies: "this network",
// carrier-grade NAT (where some clouds put their metadata service), IETF protocol
// assignments, benchmarking, and the reserved block up to the broadcast address.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// embedded are IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64) or in
// bits 16 to 48 (6to4); the IPv4 address inside is checked too.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// checkAddr returns an error naming the kind of a that the policy refuses, or nil.
func (p Policy) checkAddr(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		if p.AllowLoopback {
			return nil
		}
		return fmt.Errorf("a loopback address: %w", ErrRefused)
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return fmt.Errorf("a link-local address (where cloud metadata services answer): %w", ErrRefused)
	case a.IsPrivate():
		return fmt.Errorf("a private address: %w", ErrRefused)
	case a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return fmt.Errorf("not a unicast address: %w", ErrRefused)
	}
	for _, b := range blocked {
		if b.Contains(a) {
			return fmt.Errorf("a reserved address: %w", ErrRefused)
		}
	}
	if a.Is6() {
		b := a.As16()
		var inner netip.Addr
		switch {
		case nat64.Contains(a):
			inner = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		case sixTo4.Contains(a):
			inner = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		}
		if inner.IsValid() {
			if err := p.checkAddr(inner); err != nil {
				return fmt.Errorf("an IPv6 address that carries %s, %w", inner, err)
			}
		}
	}
	return nil
}

// plainHTTPKey marks the context of a request sent over http, whose connection may go to the
// loopback interface alone.
type plainHTTPKey struct{}

// control is the dialer's check of every address it connects to, after resolution: a name
// that resolves elsewhere at delivery time than it did at submit time is caught here.
func (p Policy) control(ctx context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: connect to %s: %w", address, ErrRefused)
	}
	a := ap.Addr()
	if err := p.checkAddr(a); err != nil {
		return fmt.Errorf("webhook: %s is %w", a, err)
	}
	if ctx.Value(plainHTTPKey{}) != nil && !a.Unmap().IsLoopback() {
		return fmt.Errorf("webhook: %s is not a loopback address, and http goes only there: %w", a, ErrRefused)
	}
	return nil
}
