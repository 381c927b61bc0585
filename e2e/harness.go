// Package e2e runs the whole of mocd in one test process — a fresh
// Postgres database, a private redis-server, flysim, the api and the worker
// — and drives it over HTTP as a customer's script would. Start gives a
// System; every HTTP call of a test goes through System.Do, so that checks
// of every answer (a response validator, for instance) hook in one place.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/openapi"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/versions"
	"github.com/myopenclaw/mocd/webhook"
	"github.com/myopenclaw/mocd/worker"
)

// Pepper is the api's token pepper in every System.
var Pepper = []byte("e2e-pepper-0123456789abcdef")

// SecretKey seals webhook signing secrets in every System.
const SecretKey = "e2e-secret-key-0123456789abcdef"

// Image is the instance image the worker asks flysim for when an instance
// has no version (and the image of the default version, 1.0.0).
const Image = "registry.example/openclaw:e2e"

// Versions is the catalog of every System unless its Options say
// otherwise: 1.0.0 is the default and runs Image.
var Versions = []versions.Version{
	{Version: "1.0.0", Image: Image, Default: true},
	{Version: "1.1.0", Image: "registry.example/openclaw:1.1.0"},
	{Version: "2.0.0", Image: "registry.example/openclaw:2.0.0"},
}

// Options adjust a System. Zero values suit most tests.
type Options struct {
	// FlysimDelay is the time machines spend in each transient state.
	FlysimDelay time.Duration
	// Flysim, when set, adjusts the emulator's options (chaos, seed, …).
	// A new app propagates for 2s unless this says otherwise, as on Fly.
	Flysim func(*flysim.Options)
	// RelayInterval and ReconcileInterval of the worker; defaults 200ms
	// and 500ms, so recovery and drift tests finish quickly.
	RelayInterval     time.Duration
	ReconcileInterval time.Duration
	// Versions is the api's catalog of OpenClaw versions; default
	// Versions (the package variable).
	Versions []versions.Version
	// UpgradeTimeout bounds an upgrade's wait for health; default 2s.
	UpgradeTimeout time.Duration
	// API and Worker, when set, adjust the options before each is built.
	API    func(*api.Options)
	Worker func(*worker.Options)
}

// System is one running mocd.
type System struct {
	// URL is the api's base URL (plain HTTP), without /api/v1.
	URL string
	// DatabaseURL is the system's own database.
	DatabaseURL string
	Store       *store.Store
	Redis       *testenv.Redis
	Flysim      *flysim.Server
	// FlysimURL is the Fly Machines API base URL the worker uses.
	FlysimURL string
	API       *api.Server
	// Hub is the api's Postgres listener (waits and event streams).
	Hub *notify.Hub
	// SecretBox seals webhook secrets; webhook URLs on loopback are
	// allowed, so that receivers can be httptest servers.
	SecretBox *webhook.SecretBox
	// Registry holds the metrics of the api, every worker started and
	// their Fly clients, as one `mocd dev` process does: the api serves it
	// at /metrics (Metrics reads it from there).
	Registry *prometheus.Registry

	t      testing.TB
	opts   Options
	logs   *testenv.Buffer
	client *http.Client

	mu     sync.Mutex
	worker *runningWorker
}

type runningWorker struct {
	cancel context.CancelFunc
	done   chan struct{}
	st     *store.Store
}

// Start runs a System for the test and stops it when the test ends.
func Start(t testing.TB, opts Options) *System {
	t.Helper()
	if opts.RelayInterval == 0 {
		opts.RelayInterval = 200 * time.Millisecond
	}
	if opts.ReconcileInterval == 0 {
		opts.ReconcileInterval = 500 * time.Millisecond
	}
	s := &System{t: t, opts: opts, logs: &testenv.Buffer{}, client: &http.Client{Timeout: 30 * time.Second}}
	s.DatabaseURL = testenv.DatabaseURL(t)
	st, err := store.Open(context.Background(), s.DatabaseURL)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	s.Store = testenv.LimitPool(st)
	s.Redis = testenv.StartRedis(t)
	// Load the OpenAPI document now: loading it takes seconds under -race,
	// and inside the first checked call it would hold that call's answer
	// back while the system works on.
	if _, err := contract(); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	if s.SecretBox, err = webhook.SecretBoxFromString(SecretKey); err != nil {
		t.Fatalf("e2e: %v", err)
	}

	s.Registry = prometheus.NewRegistry()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: s.Redis.Addr()})
	s.Registry.MustRegister(asynqmetrics.NewQueueMetricsCollector(insp))

	if opts.Versions == nil {
		opts.Versions = Versions
	}
	if opts.UpgradeTimeout == 0 {
		opts.UpgradeTimeout = 2 * time.Second
	}
	s.opts = opts
	catalog, err := versions.Static(opts.Versions)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	fo := flysim.Options{Delay: opts.FlysimDelay, Propagation: 2 * time.Second}
	if opts.Flysim != nil {
		opts.Flysim(&fo)
	}
	s.Flysim = flysim.New(fo)
	flyServer := httptest.NewServer(s.Flysim)
	s.FlysimURL = flyServer.URL

	rc := s.Redis.Client()
	enq := asynq.NewClient(asynq.RedisClientOpt{Addr: s.Redis.Addr()})
	s.Hub = notify.New(s.DatabaseURL, api.NotifyChannels, s.logger("notify"))
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan struct{})
	go func() { _ = s.Hub.Run(hctx); close(hdone) }()
	ao := api.Options{
		Store: st,
		Redis: rc,
		// A generous timeout: the suite runs under -race beside other test
		// packages on two cores; failing closed is tested in api/.
		Limiter:        ratelimit.New(rc, ratelimit.Options{Prefix: "e2e:rl:", Timeout: 5 * time.Second}),
		Pepper:         Pepper,
		Logger:         s.logger("api"),
		Registry:       s.Registry,
		AllowPlainHTTP: true,
		Enqueuer:       enq,

		SecretBox:           s.SecretBox,
		WebhookAllowPrivate: true,
		Notifier:            s.Hub,
		Versions:            catalog,
	}
	if opts.API != nil {
		opts.API(&ao)
	}
	s.API = api.New(ao)
	apiServer := httptest.NewServer(s.API.Handler())
	s.URL = apiServer.URL
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() { s.API.Run(actx); close(adone) }()

	s.StartWorker()
	// Cleanups run last-in first-out: the worker stops before anything it
	// uses; flysim releases held wait calls before its server closes.
	t.Cleanup(func() {
		apiServer.Close()
		acancel()
		<-adone
		hcancel()
		<-hdone
		enq.Close()
		insp.Close()
		s.Flysim.Close()
		flyServer.Close()
		st.Close()
		if t.Failed() {
			s.logs.LogProblems(t)
		}
	})
	t.Cleanup(s.StopWorker)
	return s
}

// logger writes JSON lines into the System's log buffer, shown when the
// test fails.
func (s *System) logger(component string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", component)
}

// Logs answers everything the api and the in-process worker logged.
func (s *System) Logs() string { return s.logs.String() }

// StartWorker runs an in-process worker, unless one runs already.
func (s *System) StartWorker() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.worker != nil {
		return
	}
	st, err := store.Open(context.Background(), s.DatabaseURL)
	if err != nil {
		s.t.Fatalf("e2e: %v", err)
	}
	wo := worker.Options{
		Store: testenv.LimitPool(st),
		Redis: asynq.RedisClientOpt{Addr: s.Redis.Addr()},
		Fly: fly.New(fly.Options{BaseURL: s.FlysimURL, Token: "e2e", MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			Registerer: s.Registry}),
		Registry:          s.Registry,
		FlyOrg:            "personal",
		Image:             Image,
		Logger:            s.logger("worker"),
		RelayInterval:     s.opts.RelayInterval,
		ReconcileInterval: s.opts.ReconcileInterval,
		MaxBackoff:        time.Second,
		ShutdownTimeout:   2 * time.Second,
		LeaseTTL:          3 * time.Second,
		Webhooks:          worker.WebhookOptions{SecretBox: s.SecretBox, AllowPrivate: true},
		UpgradeTimeout:    s.opts.UpgradeTimeout,
		HealthPoll:        20 * time.Millisecond,
	}
	// Wake-ups on, as mocd worker runs them: every test also proves that a
	// woken run and its task never run an operation twice.
	hub := notify.New(s.DatabaseURL, []string{worker.ChannelOperationCreated}, s.logger("worker"))
	watched := &watchedHub{Hub: hub, watching: make(chan struct{})}
	wo.Waker = watched
	if s.opts.Worker != nil {
		s.opts.Worker(&wo)
	}
	w := worker.New(wo)
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{cancel: cancel, done: make(chan struct{}), st: st}
	go func() {
		defer close(rw.done)
		hubDone := make(chan struct{})
		go func() {
			defer close(hubDone)
			if err := hub.Run(ctx); err != nil {
				s.t.Errorf("e2e: worker's listener: %v", err)
			}
		}()
		if err := w.Run(ctx); err != nil {
			s.t.Errorf("e2e: worker: %v", err)
		}
		<-hubDone
	}()
	s.worker = rw
	// Wake-ups are on once the hub listens and the worker watches it: an
	// operation accepted before then would wait for Asynq's poll, which a
	// test of wake-ups (wake_test.go) takes for a lost wake-up.
	if wo.Waker == watched {
		for _, c := range []<-chan struct{}{hub.Ready(), watched.watching} {
			select {
			case <-c:
			case <-time.After(30 * time.Second):
				s.t.Fatalf("e2e: the worker's wake-ups did not start within 30s")
			}
		}
	}
}

// watchedHub is the worker's notify.Hub, telling when the worker has begun
// to watch it.
type watchedHub struct {
	*notify.Hub
	watching chan struct{}
	once     sync.Once
}

func (h *watchedHub) Watch(channel string, fn func(payload string)) (stop func()) {
	stop = h.Hub.Watch(channel, fn)
	h.once.Do(func() { close(h.watching) })
	return stop
}

// StopWorker stops the in-process worker and waits for it.
func (s *System) StopWorker() {
	s.mu.Lock()
	rw := s.worker
	s.worker = nil
	s.mu.Unlock()
	if rw == nil {
		return
	}
	rw.cancel()
	<-rw.done
	rw.st.Close()
}

// NewAccount creates an account on plan with one key holding every scope.
func (s *System) NewAccount(t testing.TB, plan string) (accountID, token string) {
	t.Helper()
	return testenv.NewAccount(t, s.Store.DB, Pepper, plan, apikey.PresetFull)
}

// NewKey adds a key with scopes (names or presets) to an account and
// answers its token.
func (s *System) NewKey(t testing.TB, accountID string, scopes ...string) string {
	t.Helper()
	return testenv.NewKey(t, s.Store.DB, Pepper, accountID, scopes...)
}

// Response is an answer of the api.
type Response = testenv.Response

// Do sends one request to the api: path starts with /api/v1 (or /healthz);
// token may be empty; body is marshalled unless it is a string or []byte;
// headers are name, value pairs. It is safe to call from several
// goroutines.
func (s *System) Do(t testing.TB, method, path, token string, body any, headers ...string) *Response {
	t.Helper()
	return s.DoAt(t, s.URL, method, path, token, body, headers...)
}

// DoAt is Do against another api replica of the System, at base.
func (s *System) DoAt(t testing.TB, base, method, path, token string, body any, headers ...string) *Response {
	t.Helper()
	req := testenv.NewRequest(t, method, base+path, token, body, headers...)
	r := testenv.Send(t, s.client, req)
	checkContract(t, req, r)
	return r
}

// contract is openapi/openapi.yaml, loaded once for every test.
var contract = sync.OnceValues(openapi.NewValidator)

// checkContract fails the test when an answer strays from the OpenAPI
// document: a route, status, header or field it does not describe. Every
// answer passes here, so the document cannot drift from the code.
func checkContract(t testing.TB, req *http.Request, r *Response) {
	t.Helper()
	v, err := contract()
	if err == nil {
		err = v.ValidateResponse(req, r.Status, r.Header, r.Body)
	}
	if err != nil {
		t.Errorf("e2e: the answer breaks the API's OpenAPI document: %v", err)
	}
}

// Operation is the public Operation object as a client decodes it.
type Operation struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	Status     string     `json:"status"`
	InstanceID string     `json:"instance_id"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Terminal reports whether the operation has finished.
func (o Operation) Terminal() bool {
	return o.Status == "succeeded" || o.Status == "failed" || o.Status == "cancelled"
}

// Instance is the public Instance object as a client decodes it.
type Instance struct {
	ID        string    `json:"id"`
	Subdomain string    `json:"subdomain"`
	Status    string    `json:"status"`
	Plan      string    `json:"plan"`
	FlyRegion string    `json:"fly_region"`
	URL       string    `json:"url"`
	Version   string    `json:"version"`
	VolumeGB  int       `json:"volume_gb"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// WaitTimeout bounds WaitOperation.
var WaitTimeout = 60 * time.Second

// WaitOperation waits until the operation has finished and answers it as
// GET /api/v1/operations/:id does. It watches Postgres while it waits, so
// that waiting spends none of the key's rate limit, then asks the api once.
func (s *System) WaitOperation(t testing.TB, token, opID string) Operation {
	t.Helper()
	var last store.Operation
	finished := testenv.Poll(WaitTimeout, func() bool {
		op, err := store.OperationByID(context.Background(), s.Store.DB, opID)
		if err != nil {
			t.Fatalf("e2e: read operation %s: %v", opID, err)
		}
		last = op
		return op.Terminal()
	})
	if !finished {
		t.Fatalf("e2e: operation %s still %s after %s", opID, last.Status, WaitTimeout)
	}
	r := s.Do(t, http.MethodGet, "/api/v1/operations/"+opID, token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("e2e: GET operation %s: %d %s", opID, r.Status, r.Body)
	}
	var op Operation
	r.JSON(t, &op)
	if !op.Terminal() {
		t.Fatalf("e2e: operation %s finished in Postgres but the api says %s", opID, op.Status)
	}
	return op
}

// MachinesOf answers the live machines flysim holds for an instance, by
// the label the worker puts on them.
func (s *System) MachinesOf(instanceID string) []flysim.Machine {
	var out []flysim.Machine
	for _, a := range s.Flysim.Machines() {
		for _, m := range a.Machines {
			if m.Config.Metadata[worker.MetadataInstanceID] == instanceID {
				out = append(out, m)
			}
		}
	}
	return out
}

// String describes the System for test logs.
func (s *System) String() string {
	return fmt.Sprintf("mocd api %s, flysim %s, %s", s.URL, s.FlysimURL, s.Redis)
}
