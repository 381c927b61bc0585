package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/webhook"
)

func TestValidateURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url string
		// wantStrict is the error without allowPrivate; wantDev with it.
		wantStrict, wantDev error
	}{
		{url: "https://10.0.0.1/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://172.16.0.1/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://192.168.1.1/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://127.0.0.1/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://127.0.0.1:8443/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[::1]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://169.254.169.254/latest/meta-data/", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[fe80::1]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[fe80::1%25eth0]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[fd00::1]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://0.0.0.0/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[::]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://100.64.0.1/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://255.255.255.255/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://224.0.0.1/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[::ffff:127.0.0.1]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[::ffff:169.254.169.254]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[64:ff9b::a00:1]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://[2002:7f00:1::]/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://localhost/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://LOCALHOST./hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://metadata.google.internal/computeMetadata/v1/", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://my-app.internal/hook", wantStrict: webhook.ErrForbiddenAddress},
		{url: "https://2130706433/hook", wantStrict: webhook.ErrInvalidURL},
		{url: "https://127.1/hook", wantStrict: webhook.ErrInvalidURL},
		{url: "https://0x7f.0.0.1/hook", wantStrict: webhook.ErrInvalidURL},
		{url: "http://127.0.0.1:9000/hook", wantStrict: webhook.ErrInvalidURL},
		{url: "http://93.184.216.34/hook", wantStrict: webhook.ErrInvalidURL},

		{url: "https://93.184.216.34/", wantStrict: nil},
		{url: "https://93.184.216.34:8443/hook?x=1", wantStrict: nil},
		{url: "https://[2606:2800:220:1:248:1893:25c8:1946]/", wantStrict: nil},
		{url: "https://[64:ff9b::5db8:d822]/", wantStrict: nil}, // NAT64 of a public address

		{url: "ftp://93.184.216.34/", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
		{url: "https:///hook", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
		{url: "https://user:pw@93.184.216.34/", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
		{url: "https://93.184.216.34:0/", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
		{url: "https://93.184.216.34:99999/", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
		{url: "93.184.216.34/hook", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
		{url: "https://exa mple.com/", wantStrict: webhook.ErrInvalidURL, wantDev: webhook.ErrInvalidURL},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			for _, c := range []struct {
				allowPrivate bool
				want         error
			}{{false, tt.wantStrict}, {true, tt.wantDev}} {
				err := webhook.ValidateURL(ctx, tt.url, c.allowPrivate, nil)
				if c.want == nil && err != nil {
					t.Errorf("allowPrivate=%v: %v, want nil", c.allowPrivate, err)
				}
				if c.want != nil && !errors.Is(err, c.want) {
					t.Errorf("allowPrivate=%v: %v, want %v", c.allowPrivate, err, c.want)
				}
			}
		})
	}
}

func TestValidateURLUnresolvable(t *testing.T) {
	t.Parallel()
	// .invalid never resolves (RFC 6761); whatever the resolver answers, it
	// is not a forbidden address nor a syntax error.
	err := webhook.ValidateURL(context.Background(), "https://no-such-host.invalid/", false, nil)
	if !errors.Is(err, webhook.ErrUnresolvable) {
		t.Fatalf("ValidateURL = %v, want ErrUnresolvable", err)
	}
}

func TestIsForbiddenIP(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"10.1.2.3", "127.0.0.2", "169.254.169.254", "100.100.100.200", "192.0.0.192", "::1", "fd00:ec2::254", "ff02::1", "::ffff:10.0.0.1"} {
		if !webhook.IsForbiddenIP(net.ParseIP(s)) {
			t.Errorf("IsForbiddenIP(%s) = false", s)
		}
	}
	for _, s := range []string{"93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"} {
		if webhook.IsForbiddenIP(net.ParseIP(s)) {
			t.Errorf("IsForbiddenIP(%s) = true", s)
		}
	}
	if !webhook.IsForbiddenIP(nil) {
		t.Error("IsForbiddenIP(nil) = false")
	}
}

func TestNewHTTPClient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/target", http.StatusFound)
			return
		}
		io.WriteString(w, "reached "+r.URL.Path)
	}))
	t.Cleanup(srv.Close)

	t.Run("loopback refused by the dialer", func(t *testing.T) {
		t.Parallel()
		c := webhook.NewHTTPClient(false, 5*time.Second)
		resp, err := c.Get(srv.URL + "/hook")
		if err == nil {
			resp.Body.Close()
			t.Fatal("request to 127.0.0.1 succeeded")
		}
		if !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Fatalf("error %v, want ErrForbiddenAddress", err)
		}
	})

	t.Run("name resolving to loopback refused by the dialer", func(t *testing.T) {
		t.Parallel()
		// ValidateURL is skipped here on purpose: the dialer alone must hold,
		// as it does when DNS changes between validation and delivery.
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		c := webhook.NewHTTPClient(false, 5*time.Second)
		resp, err := c.Get("http://localhost:" + port + "/hook")
		if err == nil {
			resp.Body.Close()
			t.Fatal("request to localhost succeeded")
		}
		if !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Fatalf("error %v, want ErrForbiddenAddress", err)
		}
	})

	t.Run("reachable with allowPrivate", func(t *testing.T) {
		t.Parallel()
		c := webhook.NewHTTPClient(true, 5*time.Second)
		resp, err := c.Get(srv.URL + "/hook")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "reached /hook" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("redirects not followed", func(t *testing.T) {
		t.Parallel()
		c := webhook.NewHTTPClient(true, 5*time.Second)
		resp, err := c.Get(srv.URL + "/redirect")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d, want 302 returned as is", resp.StatusCode)
		}
	})

	t.Run("environment proxy ignored", func(t *testing.T) {
		t.Parallel()
		tr, ok := webhook.NewHTTPClient(false, time.Second).Transport.(*http.Transport)
		if !ok {
			t.Fatal("Transport is not an *http.Transport")
		}
		if tr.Proxy != nil {
			t.Fatal("Transport uses a proxy")
		}
	})
}

// TestEveryIPv6FormOfAForbiddenIPv4IsForbidden (issue 12, item 7): the
// guard once let through IPv4-translated addresses; every IPv6 form that
// carries a forbidden IPv4 address for a gateway or tunnel must be refused,
// and the same forms of a public address stay allowed where routable.
func TestEveryIPv6FormOfAForbiddenIPv4IsForbidden(t *testing.T) {
	t.Parallel()
	forms := map[string]func(a [4]byte) string{
		"IPv4-mapped":     func(a [4]byte) string { return fmt.Sprintf("::ffff:%d.%d.%d.%d", a[0], a[1], a[2], a[3]) },
		"IPv4-translated": func(a [4]byte) string { return fmt.Sprintf("::ffff:0:%d.%d.%d.%d", a[0], a[1], a[2], a[3]) },
		"IPv4-compatible": func(a [4]byte) string { return fmt.Sprintf("::%d.%d.%d.%d", a[0], a[1], a[2], a[3]) },
		"NAT64":           func(a [4]byte) string { return fmt.Sprintf("64:ff9b::%d.%d.%d.%d", a[0], a[1], a[2], a[3]) },
		"6to4":            func(a [4]byte) string { return fmt.Sprintf("2002:%02x%02x:%02x%02x::1", a[0], a[1], a[2], a[3]) },
		"ISATAP":          func(a [4]byte) string { return fmt.Sprintf("2606:4700::5efe:%d.%d.%d.%d", a[0], a[1], a[2], a[3]) },
		"ISATAP global":   func(a [4]byte) string { return fmt.Sprintf("2606:4700::200:5efe:%d.%d.%d.%d", a[0], a[1], a[2], a[3]) },
		"Teredo":          func(a [4]byte) string { return "2001:0:4136:e378:8000:63bf:3fff:fdd2" },
	}
	for _, v4 := range [][4]byte{{127, 0, 0, 1}, {10, 0, 0, 1}, {169, 254, 169, 254}, {0, 0, 0, 0}, {100, 64, 0, 1}, {192, 168, 1, 1}, {172, 16, 0, 1}} {
		for name, form := range forms {
			addr := form(v4)
			if ip := net.ParseIP(addr); ip == nil || !webhook.IsForbiddenIP(ip) {
				t.Errorf("%s form %s of %v is allowed", name, addr, v4)
			}
			err := webhook.ValidateURL(context.Background(), "https://["+addr+"]/hook", false, nil)
			if !errors.Is(err, webhook.ErrForbiddenAddress) {
				t.Errorf("ValidateURL(%s): %v", addr, err)
			}
		}
	}
	public := [4]byte{93, 184, 216, 34}
	for _, name := range []string{"NAT64", "6to4", "ISATAP", "IPv4-translated"} {
		if addr := forms[name](public); webhook.IsForbiddenIP(net.ParseIP(addr)) {
			t.Errorf("%s form %s of a public address is refused", name, addr)
		}
	}
}

// TestUnresolvableHostDoesNotNameOurResolver (issue 12, item 7): the error
// for a name that does not resolve once carried "on 10.0.0.2:53", our DNS
// server's address.
func TestUnresolvableHostDoesNotNameOurResolver(t *testing.T) {
	t.Parallel()
	// A resolver whose every query fails: its error names the configured
	// DNS server, as a real failure does.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("refused for the test")
	}}
	_, lookupErr := r.LookupNetIP(context.Background(), "ip", "hook.example.com")
	var dnsErr *net.DNSError
	if !errors.As(lookupErr, &dnsErr) || dnsErr.Server == "" {
		t.Fatalf("the lookup error names no server, so this test would prove nothing: %v", lookupErr)
	}
	err := webhook.ValidateURL(context.Background(), "https://hook.example.com/x", false, r)
	if !errors.Is(err, webhook.ErrUnresolvable) {
		t.Fatalf("err = %v", err)
	}
	host, _, _ := net.SplitHostPort(dnsErr.Server)
	if strings.Contains(err.Error(), dnsErr.Server) || (host != "" && strings.Contains(err.Error(), host)) {
		t.Fatalf("the error names our resolver %s: %v", dnsErr.Server, err)
	}
}
