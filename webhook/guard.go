package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Errors returned by ValidateURL and by connections of NewHTTPClient, to be
// tested with errors.Is. ErrInvalidURL and ErrForbiddenAddress are the
// customer's mistake (the api answers 400); ErrUnresolvable may be a passing DNS
// failure, so a sender retries on it rather than giving up.
var (
	ErrInvalidURL       = errors.New("webhook: invalid URL")
	ErrForbiddenAddress = errors.New("webhook: URL points to a private, loopback, link-local or otherwise non-public address")
	ErrUnresolvable     = errors.New("webhook: host does not resolve")
)

// forbiddenPrefixes are ranges that are not reachable on the public internet,
// or that reach something mocd's own network should keep private, beyond what
// netip's Is* methods already cover (loopback, private, link-local,
// multicast, unspecified).
var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT; also Alibaba Cloud metadata 100.100.100.200
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments; also Oracle Cloud metadata 192.0.0.192
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking, often used for internal networks
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. broadcast 255.255.255.255
	netip.MustParsePrefix("::/96"),           // IPv4-compatible IPv6 (deprecated), incl. :: and ::1
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to an IPv4 address we cannot vet
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// Prefixes whose IPv6 addresses carry an IPv4 address that a gateway may
// reach on our behalf: the embedded address must be allowed too.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // IPv4 in the last 4 bytes
	sixToFour   = netip.MustParsePrefix("2002::/16")    // IPv4 in bytes 2 to 5
	// IPv4-translated (RFC 2765, SIIT): ::ffff:0:a.b.c.d. Not the same as
	// IPv4-mapped (::ffff:a.b.c.d), which Unmap handles.
	translated = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// forbiddenHosts are cloud metadata names, refused even where they do not
// resolve (they would on the matching cloud). Names under ".internal", a
// top-level domain reserved for private use (Fly.io's private network among
// them), are refused as well.
var forbiddenHosts = map[string]bool{
	"metadata":                   true,
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"instance-data":              true,
	"instance-data.ec2.internal": true,
}

// IsForbiddenIP reports whether ip must never receive a webhook: private
// (RFC 1918, fc00::/7), loopback, link-local (169.254.0.0/16 with the cloud
// metadata service at 169.254.169.254, fe80::/10), multicast, unspecified,
// carrier-grade NAT (100.64.0.0/10), 0.0.0.0/8, broadcast and the other
// reserved ranges, in IPv4 form or in any IPv6 form that embeds one of them
// (IPv4-mapped, NAT64, 6to4). An invalid ip is forbidden.
func IsForbiddenIP(ip net.IP) bool {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return true
	}
	return isForbiddenAddr(addr)
}

func isForbiddenAddr(addr netip.Addr) bool {
	if !addr.IsValid() || addr.Zone() != "" {
		// A zone only ever qualifies a link-local address.
		return true
	}
	addr = addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	// IsGlobalUnicast is false for loopback, link-local, multicast,
	// unspecified and the IPv4 broadcast address.
	if !addr.IsGlobalUnicast() || addr.IsPrivate() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	if v4, ok := embeddedIPv4(addr); ok {
		return isForbiddenAddr(v4)
	}
	return false
}

// embeddedIPv4 returns the IPv4 address that an IPv6 form carries for a
// gateway or tunnel to reach: NAT64 (64:ff9b::/96), 6to4 (2002::/16),
// IPv4-translated (::ffff:0:0:0/96) and an ISATAP interface identifier
// (…:0:5efe:a.b.c.d or …:200:5efe:a.b.c.d under any prefix). The other
// forms that embed one (IPv4-compatible ::/96, Teredo 2001::/32) are
// refused whole by forbiddenPrefixes, IPv4-mapped by Unmap.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	if !addr.Is6() {
		return netip.Addr{}, false
	}
	b := addr.As16()
	switch {
	case nat64Prefix.Contains(addr), translated.Contains(addr):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case (b[8]|0x02) == 0x02 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe:
		return netip.AddrFrom4([4]byte(b[12:16])), true
	}
	return netip.Addr{}, false
}

// ValidateURL checks that raw may be a webhook endpoint: an https URL (http
// too when allowPrivate) with a host, no user:password, and a host none of
// whose addresses is forbidden by IsForbiddenIP. A host name is resolved with
// resolver (nil means net.DefaultResolver), and refused if ANY of its
// addresses is forbidden, because the sender could connect to any of them.
//
// allowPrivate is for local development and tests only: it allows http and
// skips every address check.
//
// Validation at creation time gives the customer an early, clear error; it
// cannot protect the delivery itself, since DNS may answer differently later.
// Deliveries must go through NewHTTPClient, which checks each connection.
func ValidateURL(ctx context.Context, raw string, allowPrivate bool, resolver *net.Resolver) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	default:
		return fmt.Errorf("%w: scheme must be https", ErrInvalidURL)
	}
	if u.User != nil {
		// Credentials in the URL would be stored and logged in clear; the
		// signature is what authenticates a delivery.
		return fmt.Errorf("%w: must not contain user information", ErrInvalidURL)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return fmt.Errorf("%w: host is required", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: bad port %q", ErrInvalidURL, p)
		}
	}
	if allowPrivate {
		return nil
	}

	if addr, err := netip.ParseAddr(host); err == nil {
		if isForbiddenAddr(addr) {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, addr)
		}
		return nil
	}
	if forbiddenHosts[host] || strings.HasSuffix(host, ".internal") {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, host)
	}
	if numericHost(host) {
		// 2130706433, 0x7f.1 or 127.1 are not host names but loose IPv4
		// forms that some resolvers turn into 127.0.0.1; refuse them
		// outright instead of depending on the resolver.
		return fmt.Errorf("%w: %q is not a host name or a canonical IP address", ErrInvalidURL, host)
	}

	if resolver == nil {
		resolver = net.DefaultResolver
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		// Not the resolver's own error: its text names our DNS server
		// ("lookup x on 10.0.0.2:53: …"), which the caller has no business
		// learning.
		return fmt.Errorf("%w: %s (%s)", ErrUnresolvable, host, dnsReason(err))
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: %s", ErrUnresolvable, host)
	}
	for _, a := range addrs {
		if isForbiddenAddr(a) {
			return fmt.Errorf("%w: %s resolves to %s", ErrForbiddenAddress, host, a.Unmap())
		}
	}
	return nil
}

// dnsReason says why a lookup failed in words that name no server.
func dnsReason(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "no such host"
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		return "the lookup timed out"
	}
	return "the lookup failed"
}

// numericHost reports whether host looks like a loose numeric IPv4 form: its
// last label is all digits (no top-level domain is), or a label is hex.
func numericHost(host string) bool {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	for _, l := range labels {
		if strings.HasPrefix(l, "0x") {
			return true
		}
	}
	return false
}

// NewHTTPClient returns the client to deliver webhooks with. Unless
// allowPrivate, its dialer refuses, at connection time, any address that
// IsForbiddenIP forbids: that is the check that counts, because it applies to
// the address actually dialled, after DNS, so a name that resolved to a
// public address at validation and to 127.0.0.1 now (DNS rebinding) is still
// refused. The error wraps ErrForbiddenAddress.
//
// The client also ignores proxy settings from the environment (a proxy would
// dial on our behalf, out of the dialer's sight), follows no redirects (a
// public receiver could otherwise redirect us to an internal address; the 3xx
// is returned as the response and counts as a failed attempt), and gives
// up after timeout (0 means no limit). TLS uses Go's default configuration.
func NewHTTPClient(allowPrivate bool, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if timeout > 0 {
		dialer.Timeout = min(dialer.Timeout, timeout)
	}
	if !allowPrivate {
		dialer.Control = refuseForbidden
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		MaxResponseHeaderBytes: 64 << 10, // a receiver's answer is only a status
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// refuseForbidden is a net.Dialer Control function: it runs after DNS, with
// the literal address about to be connected to.
func refuseForbidden(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s", ErrForbiddenAddress, network)
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || isForbiddenAddr(addr) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
	}
	return nil
}
