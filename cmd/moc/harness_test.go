package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/myopenclaw/mocd/e2e"
	"github.com/myopenclaw/mocd/openapi"
	"github.com/myopenclaw/mocd/testenv"
)

// The tests run moc in-process (run, with its IO) against a whole mocd —
// api, worker and flysim on a real Postgres and Redis (e2e.Start) — and
// check every answer the API gives moc against the OpenAPI document.

// result is one run of moc.
type result struct {
	code           int
	stdout, stderr string
}

// JSON decodes stdout into v.
func (r result) JSON(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not one JSON document (%v):\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
}

// cli runs moc for one account.
type cli struct {
	t     *testing.T
	sys   *e2e.System
	env   map[string]string
	tty   bool
	stdin string
}

func newCLI(t *testing.T, sys *e2e.System, token string) *cli {
	return &cli{t: t, sys: sys, env: map[string]string{
		"MOC_TOKEN":      token,
		"MOC_API_URL":    sys.URL,
		"MOC_CONFIG_DIR": t.TempDir(),
	}}
}

// with answers a copy with env changed ("" unsets).
func (c *cli) with(kv ...string) *cli {
	n := *c
	n.env = map[string]string{}
	for k, v := range c.env {
		n.env[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		n.env[kv[i]] = kv[i+1]
	}
	return &n
}

func (c *cli) run(args ...string) result {
	return c.runCtx(context.Background(), args...)
}

func (c *cli) runCtx(ctx context.Context, args ...string) result {
	c.t.Helper()
	var stdout, stderr testenv.Buffer
	code := run(ctx, args, IO{
		Stdin:      strings.NewReader(c.stdin),
		Stdout:     &stdout,
		Stderr:     &stderr,
		Getenv:     func(k string) string { return c.env[k] },
		StdoutTTY:  c.tty,
		StderrTTY:  c.tty,
		HTTPClient: &http.Client{Transport: contractChecker{t: c.t}},
	})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs moc, wants exit 0 and decodes its JSON into v (when not nil).
func (c *cli) ok(v any, args ...string) result {
	c.t.Helper()
	r := c.run(append([]string{"-o", "json"}, args...)...)
	if r.code != 0 {
		c.t.Fatalf("moc %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if v != nil {
		r.JSON(c.t, v)
	}
	return r
}

// fails runs moc and wants exit code.
func (c *cli) fails(code int, args ...string) result {
	c.t.Helper()
	r := c.run(append([]string{"-o", "json"}, args...)...)
	if r.code != code {
		c.t.Fatalf("moc %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

var contract = sync.OnceValues(openapi.NewValidator)

// contractChecker is a transport that validates every answer of the API
// against the OpenAPI document, as e2e.System.Do does for raw calls.
type contractChecker struct{ t *testing.T }

func (cc contractChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	v, verr := contract()
	if verr == nil {
		verr = v.ValidateResponse(req, resp.StatusCode, resp.Header, body)
	}
	if verr != nil {
		cc.t.Errorf("moc got an answer that breaks the OpenAPI document: %v", verr)
	}
	return resp, nil
}

// Operation and the other shapes below are what moc prints, decoded.
type operation struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	InstanceID string `json:"instance_id"`
	Error      *struct {
		Code string `json:"code"`
	} `json:"error"`
}

type instance struct {
	ID        string `json:"id"`
	Subdomain string `json:"subdomain"`
	Status    string `json:"status"`
	FlyRegion string `json:"fly_region"`
}
