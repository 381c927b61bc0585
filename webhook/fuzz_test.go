package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/webhook"
)

// FuzzValidateURL (issue 12): any URL, with a resolver that never answers
// (no network in a fuzz run). A URL that passes is https with a host, and
// an IP-literal host it lets through is a public address.
func FuzzValidateURL(f *testing.F) {
	for _, seed := range []string{
		"https://93.184.216.34/hook", "https://[::ffff:0:127.0.0.1]/", "https://[2606:4700::5efe:10.0.0.1]/",
		"https://[64:ff9b::a9fe:a9fe]/", "https://[2002:c0a8:101::1]/", "https://2130706433/", "https://0x7f.1/",
		"https://metadata.google.internal/", "https://user:pw@example.com/", "https://[fe80::1%25eth0]/",
		"http://example.com/", "https://example.com:99999/", "https://\x00/", "https://[::1]:443/",
	} {
		f.Add(seed)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no network in a fuzz run")
	}}
	f.Fuzz(func(t *testing.T, raw string) {
		err := webhook.ValidateURL(context.Background(), raw, false, r)
		if err != nil {
			if !errors.Is(err, webhook.ErrInvalidURL) && !errors.Is(err, webhook.ErrForbiddenAddress) && !errors.Is(err, webhook.ErrUnresolvable) {
				t.Fatalf("ValidateURL(%q): an error of no kind: %v", raw, err)
			}
			if strings.Contains(err.Error(), ":53") && !strings.Contains(raw, ":53") {
				t.Fatalf("ValidateURL(%q) names a DNS server: %v", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil {
			t.Fatalf("ValidateURL accepted %q", raw)
		}
		if addr, perr := netip.ParseAddr(u.Hostname()); perr == nil && webhook.IsForbiddenIP(addr.AsSlice()) {
			t.Fatalf("ValidateURL accepted forbidden %q", raw)
		}
	})
}

// FuzzForbiddenIP (issue 12): the address guard answers the same for an
// IPv4 address and every IPv6 form that embeds it for a gateway or tunnel.
func FuzzForbiddenIP(f *testing.F) {
	for _, seed := range [][]byte{
		{127, 0, 0, 1}, {10, 1, 2, 3}, {169, 254, 169, 254}, {93, 184, 216, 34}, {100, 64, 0, 1}, {0, 0, 0, 0},
		netip.MustParseAddr("::ffff:0:7f00:1").AsSlice(), netip.MustParseAddr("2606:4700::5efe:a00:1").AsSlice(),
		netip.MustParseAddr("2606:2800:220:1:248:1893:25c8:1946").AsSlice(),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 4 && len(b) != 16 {
			if !webhook.IsForbiddenIP(b) {
				t.Fatalf("an invalid address %x is allowed", b)
			}
			return
		}
		if len(b) == 16 {
			webhook.IsForbiddenIP(b) // any 16 bytes: must not panic
			return
		}
		v4 := [4]byte(b)
		want := webhook.IsForbiddenIP(b)
		forms := map[string][16]byte{}
		var mapped, translated, nat64, isatap [16]byte
		mapped[10], mapped[11] = 0xff, 0xff
		translated[8], translated[9] = 0xff, 0xff
		nat64[0], nat64[1], nat64[2], nat64[3] = 0x00, 0x64, 0xff, 0x9b
		isatap[0], isatap[1], isatap[2], isatap[3] = 0x26, 0x06, 0x47, 0x00
		isatap[10], isatap[11] = 0x5e, 0xfe
		for name, a := range map[string]*[16]byte{"mapped": &mapped, "translated": &translated, "NAT64": &nat64, "ISATAP": &isatap} {
			copy(a[12:], v4[:])
			forms[name] = *a
		}
		for name, a := range forms {
			// An embedding form is at least as forbidden as its address.
			if want && !webhook.IsForbiddenIP(a[:]) {
				t.Fatalf("%v is forbidden but its %s form %s is not", v4, name, netip.AddrFrom16(a))
			}
		}
		if got := webhook.IsForbiddenIP(mapped[:]); got != want {
			t.Fatalf("%v: forbidden %v, its IPv4-mapped form %v", v4, want, got)
		}
	})
}
