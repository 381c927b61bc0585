package fly_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/flysim"
)

const testToken = "fm2_secret-token"

type bundle struct {
	sim    *flysim.Server
	url    string
	client *fly.Client
}

// setup runs flysim behind a real HTTP server with a client whose backoff is
// short enough for tests; opts overrides the client's options.
func setup(t *testing.T, opts fly.Options) *bundle {
	t.Helper()
	sim := flysim.New(flysim.Options{})
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		ts.Close()
		sim.Close()
	})
	opts.BaseURL = ts.URL
	if opts.Token == "" {
		opts.Token = testToken
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	return &bundle{sim: sim, url: ts.URL, client: fly.New(opts)}
}

func (b *bundle) app(t *testing.T, name string) {
	t.Helper()
	if _, err := b.client.CreateApp(context.Background(), name, "personal"); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) machine(t *testing.T, app string) *fly.Machine {
	t.Helper()
	m, err := b.client.CreateMachine(context.Background(), app, fly.MachineInput{Config: fly.MachineConfig{Image: "openclaw:1"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func flyError(t *testing.T, err error) *fly.Error {
	t.Helper()
	var fe *fly.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fly.Error", err, err)
	}
	return fe
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, fly.Options{})
	c, ctx := b.client, context.Background()

	app, err := c.CreateApp(ctx, "inst-1", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if app.ID == "" || app.Name != "inst-1" || app.Organization.Slug != "acme" {
		t.Errorf("CreateApp = %+v", app)
	}
	if app, err = c.GetApp(ctx, "inst-1"); err != nil || app.Name != "inst-1" {
		t.Fatalf("GetApp = %+v, %v", app, err)
	}

	m, err := c.CreateMachine(ctx, "inst-1", fly.MachineInput{
		Name:   "inst-1",
		Region: "cdg",
		Config: fly.MachineConfig{
			Image:    "registry.fly.io/openclaw:1.2",
			Guest:    &fly.Guest{CPUKind: "shared", CPUs: 1, MemoryMB: 512},
			Env:      map[string]string{"MODE": "prod"},
			Metadata: map[string]string{"instance_id": "inst_1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ID) != 14 || len(m.InstanceID) != 26 || m.Region != "cdg" || m.Name != "inst-1" || m.PrivateIP == "" ||
		m.CreatedAt == "" || m.UpdatedAt == "" || m.Config.Metadata["instance_id"] != "inst_1" || m.Config.Guest.MemoryMB != 512 {
		t.Errorf("CreateMachine = %+v", m)
	}
	if err := c.WaitMachine(ctx, "inst-1", m.ID, fly.StateStarted, "", time.Minute); err != nil {
		t.Fatal(err)
	}

	list, err := c.ListMachines(ctx, "inst-1")
	if err != nil || len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("ListMachines = %+v, %v", list, err)
	}

	if err := c.StopMachine(ctx, "inst-1", m.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetMachine(ctx, "inst-1", m.ID); err != nil || got.State != fly.StateStopped {
		t.Fatalf("after stop: %+v, %v", got, err)
	}
	if prev, err := c.StartMachine(ctx, "inst-1", m.ID); err != nil || prev != fly.StateStopped {
		t.Fatalf("StartMachine = %q, %v", prev, err)
	}
	if err := c.RestartMachine(ctx, "inst-1", m.ID); err != nil {
		t.Fatal(err)
	}

	lease, err := c.AcquireLease(ctx, "inst-1", m.ID, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Nonce == "" || lease.ExpiresAt <= time.Now().Unix() {
		t.Errorf("lease = %+v", lease)
	}
	if _, err := c.AcquireLease(ctx, "inst-1", m.ID, 30*time.Second); fly.StatusCode(err) != http.StatusConflict {
		t.Errorf("second lease: %v", err)
	}
	if err := c.StopMachine(ctx, "inst-1", m.ID); fly.StatusCode(err) != http.StatusConflict {
		t.Errorf("stop without the nonce: %v", err)
	}
	if err := c.StopMachine(ctx, "inst-1", m.ID, fly.WithLease(lease.Nonce)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartMachine(ctx, "inst-1", m.ID, fly.WithLease(lease.Nonce)); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseLease(ctx, "inst-1", m.ID, lease.Nonce); err != nil {
		t.Fatal(err)
	}

	err = c.DestroyMachine(ctx, "inst-1", m.ID, false)
	if fe := flyError(t, err); fe.StatusCode != http.StatusPreconditionFailed || fe.Message == "" {
		t.Errorf("destroy without force: %v", err)
	}
	if err := c.DestroyMachine(ctx, "inst-1", m.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMachine(ctx, "inst-1", m.ID, fly.StateDestroyed, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetMachine(ctx, "inst-1", m.ID); err != nil || got.State != fly.StateDestroyed {
		t.Errorf("destroyed machine: %+v, %v", got, err)
	}

	if err := c.DeleteApp(ctx, "inst-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetApp(ctx, "inst-1"); !fly.IsNotFound(err) {
		t.Errorf("GetApp after delete: %v", err)
	}
	if len(b.sim.Machines()) != 0 {
		t.Errorf("flysim still holds %+v", b.sim.Machines())
	}
}

func TestWaitTimeoutIs408(t *testing.T) {
	t.Parallel()
	b := setup(t, fly.Options{})
	b.app(t, "app-1")
	m := b.machine(t, "app-1")

	err := b.client.WaitMachine(context.Background(), "app-1", m.ID, fly.StateStopped, m.VersionID(), time.Second)
	if fly.StatusCode(err) != http.StatusRequestTimeout {
		t.Fatalf("wait for a state never reached: %v", err)
	}
	if n := b.sim.Calls("GET", "/v1/apps/{app}/machines/{id}/wait"); n != 1 {
		t.Errorf("a 408 was retried: %d calls", n)
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	const pattern = "/v1/apps/{app}/machines"

	t.Run("503 three times then success", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		b.app(t, "app-1")
		b.sim.InjectFault(flysim.Fault{Method: "POST", Path: pattern, Status: 503, Count: 3})
		b.machine(t, "app-1")
		if n := b.sim.Calls("POST", pattern); n != 4 {
			t.Errorf("flysim counted %d calls, want 4", n)
		}
		if n := len(b.sim.Machines()[0].Machines); n != 1 {
			t.Errorf("flysim holds %d machines, want 1", n)
		}
	})

	for _, status := range []int{429, 502, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			b := setup(t, fly.Options{})
			b.sim.InjectFault(flysim.Fault{Path: "/v1/apps", Status: status, Count: 1})
			b.app(t, "app-1")
			if n := b.sim.Calls("POST", "/v1/apps"); n != 2 {
				t.Errorf("%d calls, want 2", n)
			}
		})
	}

	t.Run("gives up after MaxRetries", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{MaxRetries: 2})
		b.sim.InjectFault(flysim.Fault{Status: 502, Count: -1})
		_, err := b.client.GetApp(context.Background(), "app-1")
		if fe := flyError(t, err); fe.StatusCode != 502 || !fly.IsRetryable(err) {
			t.Errorf("err = %v", err)
		}
		if n := b.sim.Calls("GET", "/v1/apps/{app}"); n != 3 {
			t.Errorf("%d calls, want 3", n)
		}
	})

	t.Run("no retries when MaxRetries is negative", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{MaxRetries: -1})
		b.sim.InjectFault(flysim.Fault{Status: 503, Count: -1})
		if _, err := b.client.GetApp(context.Background(), "app-1"); fly.StatusCode(err) != 503 {
			t.Errorf("err = %v", err)
		}
		if n := b.sim.Calls("GET", "/v1/apps/{app}"); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
}

func TestNoRetryOnOtherFailures(t *testing.T) {
	t.Parallel()

	t.Run("422 from the API", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		_, err := b.client.CreateApp(context.Background(), "Not_Valid", "personal")
		fe := flyError(t, err)
		if fe.StatusCode != 422 || fe.RequestID == "" || fe.Status != "invalid" || !strings.Contains(fe.Message, "invalid app name") {
			t.Errorf("err = %+v", fe)
		}
		for _, want := range []string{"POST", "/v1/apps", "422", "invalid app name", fe.RequestID} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not name %q", err, want)
			}
		}
		if fly.IsRetryable(err) || fly.IsNotFound(err) {
			t.Error("a 422 is neither retryable nor not found")
		}
		if n := b.sim.Calls("POST", "/v1/apps"); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})

	t.Run("404", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		_, err := b.client.GetMachine(context.Background(), "nope", "0123456789abcd")
		if !fly.IsNotFound(err) || fly.StatusCode(err) != 404 {
			t.Errorf("err = %v", err)
		}
		if n := b.sim.Calls("GET", "/v1/apps/{app}/machines/{id}"); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})

	t.Run("500", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		b.sim.InjectFault(flysim.Fault{Status: 500, Count: -1})
		_, err := b.client.GetApp(context.Background(), "x")
		if fly.StatusCode(err) != 500 || fly.IsRetryable(err) {
			t.Errorf("err = %v", err)
		}
		if n := b.sim.Calls("GET", "/v1/apps/{app}"); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})

	t.Run("non-JSON body", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		long := "<html>" + strings.Repeat("x", 2000) + "</html>"
		b.sim.InjectFault(flysim.Fault{Status: 400, Body: long})
		_, err := b.client.GetApp(context.Background(), "x")
		fe := flyError(t, err)
		if !strings.HasPrefix(fe.Message, "<html>xxx") || len(fe.Message) > 600 {
			t.Errorf("message %q", fe.Message)
		}
	})

	t.Run("message before error", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		b.sim.InjectFault(flysim.Fault{Status: 400, Body: `{"error":"short","message":"the long story","status":"bad"}`})
		_, err := b.client.GetApp(context.Background(), "x")
		if fe := flyError(t, err); fe.Message != "the long story" || fe.Status != "bad" {
			t.Errorf("err = %+v", fe)
		}
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t, fly.Options{})
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps", Status: 429, RetryAfter: 1})
	start := time.Now()
	b.app(t, "app-1")
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %v despite Retry-After: 1", d)
	}
}

func TestContextStopsRetries(t *testing.T) {
	t.Parallel()

	t.Run("cancel during backoff", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The retry record is written just before the pause: cancel there.
		logger := slog.New(onRecord{msg: "fly: retrying", do: cancel})
		b := setup(t, fly.Options{MinBackoff: time.Minute, MaxBackoff: time.Minute, Logger: logger})
		b.sim.InjectFault(flysim.Fault{Status: 503, Count: -1})
		_, err := b.client.GetApp(ctx, "app-1")
		if !errors.Is(err, context.Canceled) || fly.StatusCode(err) != 503 {
			t.Errorf("err = %v", err)
		}
		if n := b.sim.Calls("GET", "/v1/apps/{app}"); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})

	t.Run("deadline shorter than the backoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{MinBackoff: time.Minute, MaxBackoff: time.Minute})
		b.sim.InjectFault(flysim.Fault{Status: 503, Count: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := b.client.GetApp(ctx, "app-1")
		if fly.StatusCode(err) != 503 || time.Since(start) > 5*time.Second {
			t.Errorf("err = %v after %v", err, time.Since(start))
		}
	})

	t.Run("cancel during a held call", func(t *testing.T) {
		t.Parallel()
		b := setup(t, fly.Options{})
		b.app(t, "app-1")
		m := b.machine(t, "app-1")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := b.client.WaitMachine(ctx, "app-1", m.ID, fly.StateStopped, m.VersionID(), time.Minute)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v", err)
		}
		if n := b.sim.Calls("GET", "/v1/apps/{app}/machines/{id}/wait"); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
}

// TestRetriesNetworkErrors uses a listener that hangs up on every connection:
// no HTTP answer at all, which only a raw socket can produce.
func TestRetriesNetworkErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()

	c := fly.New(fly.Options{BaseURL: "http://" + ln.Addr().String(), Token: "x", MaxRetries: 2, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	_, err = c.GetApp(context.Background(), "app-1")
	if err == nil || fly.StatusCode(err) != 0 || !fly.IsRetryable(err) {
		t.Fatalf("err = %v", err)
	}
	if n := accepted.Load(); n < 3 {
		t.Errorf("%d connections, want at least 3", n)
	}
}

func TestAuthorizationHeader(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got []string
	)
	// A recorder, not an emulator: it checks only how the token is sent.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte(`{"name":"a"}`))
	}))
	t.Cleanup(ts.Close)

	for _, tc := range []struct{ token, want string }{
		{token: "abc123", want: "Bearer abc123"},
		{token: "fm2_abc", want: "FlyV1 fm2_abc"},
		{token: "fm1r_abc", want: "FlyV1 fm1r_abc"},
		{token: "fm1a_abc", want: "FlyV1 fm1a_abc"},
		{token: "FlyV1 fm2_a,fm2_b", want: "FlyV1 fm2_a,fm2_b"},
		// A macaroon written with the wrong scheme still goes as FlyV1.
		{token: "Bearer fm2_abc", want: "FlyV1 fm2_abc"},
		{token: "  flyv1 fm2_abc ", want: "FlyV1 fm2_abc"},
		// With a macaroon among them, only the macaroons are sent (flaps'
		// FlapsHeader); a user token alone goes as Bearer.
		{token: "fo1_user,fm2_abc", want: "FlyV1 fm2_abc"},
		{token: "Bearer fo1_user", want: "Bearer fo1_user"},
		{token: "", want: ""},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		c := fly.New(fly.Options{BaseURL: ts.URL + "/", Token: tc.token})
		if _, err := c.GetApp(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("token %q sent as %q, want %q", tc.token, got, tc.want)
		}
		mu.Unlock()
	}
}

func TestTokenNeverLogged(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := setup(t, fly.Options{Logger: logger})
	b.sim.InjectFault(flysim.Fault{Status: 503, Count: 2})
	b.app(t, "app-1")
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "retrying") {
		t.Errorf("no retry logged: %s", buf.String())
	}
	if strings.Contains(buf.String(), "secret-token") {
		t.Errorf("token logged: %s", buf.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// onRecord is a slog.Handler that runs do when a record with message msg is
// logged.
type onRecord struct {
	msg string
	do  func()
}

func (h onRecord) Enabled(context.Context, slog.Level) bool { return true }

func (h onRecord) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.do()
	}
	return nil
}

func (h onRecord) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onRecord) WithGroup(string) slog.Handler      { return h }

// TestCreateAppAsFlaps: the name goes in "name" and the create asks for
// ?wait=true; flysim refuses "app_name" alone and hides an app created
// without wait=true from calls without its affinity cookie.
func TestCreateAppAsFlaps(t *testing.T) {
	t.Parallel()
	sim := flysim.New(flysim.Options{Propagation: time.Hour})
	ts := httptest.NewServer(sim)
	t.Cleanup(func() { ts.Close(); sim.Close() })
	c := fly.New(fly.Options{BaseURL: ts.URL, Token: testToken})
	ctx := context.Background()
	if _, err := c.CreateApp(ctx, "flaps-like", "personal"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetApp(ctx, "flaps-like"); err != nil {
		t.Fatalf("the app is not visible right after its create: %v", err)
	}
	if n := sim.Calls(http.MethodPost, "/v1/apps"); n != 1 {
		t.Errorf("%d create calls", n)
	}
}

// TestCookieJarKeepsAffinity: an app that is slow to propagate (flysim's
// chaos mode makes every new app so, wait=true or not; a delay fault on
// every call keeps the calls themselves out of chaos) is visible to the
// client whose create got the affinity cookie, and to no other.
func TestCookieJarKeepsAffinity(t *testing.T) {
	t.Parallel()
	sim := flysim.New(flysim.Options{Chaos: 1, ChaosSlow: time.Hour})
	sim.InjectFault(flysim.Fault{Path: "/v1", DelayMS: 1, Count: -1})
	ts := httptest.NewServer(sim)
	t.Cleanup(func() { ts.Close(); sim.Close() })
	hc := &http.Client{}
	c := fly.New(fly.Options{BaseURL: ts.URL, Token: testToken, HTTPClient: hc})
	if hc.Jar != nil {
		t.Error("New changed the caller's http.Client")
	}
	ctx := context.Background()
	if _, err := c.CreateApp(ctx, "jarred", "personal"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetApp(ctx, "jarred"); err != nil {
		t.Fatalf("the creator cannot see its app: %v", err)
	}
	if _, err := c.CreateMachine(ctx, "jarred", fly.MachineInput{Config: fly.MachineConfig{Image: "x"}}); err != nil {
		t.Fatal(err)
	}
	other := fly.New(fly.Options{BaseURL: ts.URL, Token: testToken, MaxRetries: -1})
	if code := fly.StatusCode(func() error { _, err := other.GetApp(ctx, "jarred"); return err }()); code != http.StatusNotFound && code != http.StatusUnauthorized {
		t.Errorf("another client sees the app still propagating: %d", code)
	}
}

// TestWaitForApp retries 404 and 401 until the app shows, and gives up on
// other failures at once.
func TestWaitForApp(t *testing.T) {
	t.Parallel()
	b := setup(t, fly.Options{})
	b.app(t, "later")
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", Status: http.StatusNotFound, Count: 3})
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", Status: http.StatusUnauthorized, Count: 2})
	app, err := b.client.WaitForApp(context.Background(), "later")
	if err != nil || app.Name != "later" {
		t.Fatalf("WaitForApp = %+v, %v", app, err)
	}
	if n := b.sim.Calls(http.MethodGet, "/v1/apps/{app}"); n != 6 {
		t.Errorf("%d GET calls, want 5 refusals + 1", n)
	}
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", Status: http.StatusForbidden})
	if _, err := b.client.WaitForApp(context.Background(), "later"); fly.StatusCode(err) != http.StatusForbidden {
		t.Errorf("WaitForApp after a 403: %v", err)
	}
	short := fly.New(fly.Options{BaseURL: b.url, Token: testToken, AppWait: 300 * time.Millisecond})
	if _, err := short.WaitForApp(context.Background(), "never"); !fly.IsNotFound(err) {
		t.Errorf("WaitForApp of an app that never comes: %v", err)
	}
	// The wait runs out while a read is held: still the app's 404, not
	// the read cut short.
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", Status: http.StatusNotFound})
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", Status: http.StatusNotFound, DelayMS: 1000, Count: -1})
	if _, err := short.WaitForApp(context.Background(), "held"); !fly.IsNotFound(err) {
		t.Errorf("WaitForApp running out during a read: %v", err)
	}
}

func TestListAppsAndNameTaken(t *testing.T) {
	t.Parallel()
	b := setup(t, fly.Options{})
	b.app(t, "one")
	b.app(t, "two")
	apps, err := b.client.ListApps(context.Background(), "personal")
	if err != nil || len(apps) != 2 || apps[0].Name != "one" {
		t.Fatalf("ListApps = %+v, %v", apps, err)
	}
	_, err = b.client.CreateApp(context.Background(), "one", "personal")
	if !fly.IsNameTaken(err) {
		t.Errorf("second create of an app: %v", err)
	}
	in := fly.MachineInput{Name: "claw", Config: fly.MachineConfig{Image: "x"}}
	if _, err := b.client.CreateMachine(context.Background(), "one", in); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.CreateMachine(context.Background(), "one", in); !fly.IsNameTaken(err) || fly.StatusCode(err) != http.StatusConflict {
		t.Errorf("second machine with one name: %v", err)
	}
}

// TestCallsInFlightKeepTheirConnections: a worker's concurrent calls reuse
// their connections from one burst to the next instead of dialling again
// (Go's default transport keeps only two idle connections per host).
func TestCallsInFlightKeepTheirConnections(t *testing.T) {
	t.Parallel()
	sim := flysim.New(flysim.Options{})
	var dials atomic.Int64
	ts := httptest.NewUnstartedServer(sim)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		sim.Close()
	})
	b := &bundle{sim: sim, url: ts.URL, client: fly.New(fly.Options{BaseURL: ts.URL, Token: testToken})}
	b.app(t, "conns")
	m := b.machine(t, "conns")

	const inFlight, bursts = 16, 5
	for range bursts {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				if _, err := b.client.GetMachine(context.Background(), "conns", m.ID); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// The first burst may dial one connection per call (and a spare or two
	// while others free up); later bursts find them idle.
	if n := dials.Load(); n > inFlight+inFlight/2 {
		t.Errorf("%d connections dialled for %d bursts of %d calls: connections are not kept between bursts", n, bursts, inFlight)
	}
}
