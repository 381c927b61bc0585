package webhook_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
