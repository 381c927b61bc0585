// Package flysim emulates the part of the Fly Machines REST API that mocd
// uses, so that `mocd dev`, docker-compose and every end-to-end test can run
// the real Fly client against something that behaves like api.machines.dev
// without a Fly account. It is strict: where Fly refuses something, flysim
// refuses it too, and where the exact answer is not documented it picks the
// stricter one. Every rule's comment names its source (the Machines API
// reference and spec, fly-go's flaps client, flyctl's behaviour, or
// FLY-MACHINES.md); its own tests pin each one.
//
// # Behaviour
//
// Apps and machines live in memory. Machines move through the Fly states with
// Options.Delay spent in each step (with a zero Delay every transition happens
// synchronously, before the answer is written, so tests are deterministic):
//
//	create:  created → starting → started   (stays created with skip_launch)
//	start:   stopped|created|suspended|failed → starting → started
//	stop:    started|starting|restarting → stopping → stopped
//	restart: started → restarting → started; from stopped|created it starts
//	update:  started|stopped|created|suspended|failed → updating → starting → started
//	         (→ updating → stopped with skip_launch; update.go has the rules)
//	destroy: → destroying → destroyed (a running machine needs force=true or kill=true)
//
// A created machine enters starting one Delay after its creation and started
// one Delay later; until then it is launching, and start, stop, restart and
// an unforced destroy answer 412. Starting a started or starting machine, and
// stopping a stopped one, are harmless no-ops; other moves from a transient
// state answer 412. SetState cancels any transition under way.
//
// Apps: the create body names the app in "name" ("app_name" alone is 422),
// org_slug is required; names are global (422 name_taken). A new app is
// unknown (404) to every call for Options.Propagation unless it was created
// with ?wait=true or the call carries the fly_flaps_affinity cookie the
// create answer set. GET /v1/apps?org_slug= lists an org's apps.
//
// Machines: names are unique among an app's live machines (409 name_taken);
// the config is echoed back whole (config.go), and validated as Fly does.
// List filters: include_deleted, region, state (comma-separated) and
// metadata.{key}={value}.
//
// wait takes state (repeatable or comma-separated; started, stopped,
// suspended, destroyed or settled; default started), timeout (whole seconds,
// 1–60, default 60) and instance_id or version, which is required when
// waiting for stopped. settled is reached in any state the machine keeps
// until someone acts. A wait whose machine is destroyed keeps waiting unless
// destroyed (or settled) is among its states.
//
// Leases last ttl seconds (query ttl or body {"ttl"}, default 30); the holder
// extends one by posting again with its nonce; releasing a lease nobody holds
// succeeds; a create with lease_ttl answers the lease's nonce in "nonce".
// While a lease is held, every write to the machine (writableLocked) without
// the fly-machine-lease-nonce header of that lease answers 409.
//
// Destroyed machines are kept: GET answers them with state "destroyed" (as
// Fly does for a while), list omits them unless include_deleted=true, and any
// write to them answers 404. Deleting an app destroys its machines and forgets
// the app; its paths then answer 404.
//
// Volumes (volumes.go) are created, listed, read and deleted under
// /v1/apps/{app}/volumes and attached through config.mounts: one volume per
// machine, in the machine's region, never one being destroyed, never one
// attached to another live machine. A machine's config.checks are reported
// in its "checks" list (checks.go): critical until the machine has been
// started for one Delay, passing afterwards unless its image was declared
// unhealthy (Options.UnhealthyImages, SetImageHealth, or the admin
// endpoint below).
//
// Fly's rate limits are not emulated: use a Fault with status 429, or chaos.
//
// Every /v1 route requires a non-empty Authorization header (401 otherwise).
// Every answer carries a random fly-request-id header. Errors are
// {"error": "...", "status": "..."}.
//
// # Chaos
//
// Options.Chaos (FLYSIM_CHAOS) is the share of /v1 calls that fail as Fly
// does when unwell: 503 with a body, 502 without, a change applied and its
// answer lost (502, reset or timeout), a reset before anything is done, 429
// with Retry-After, a slow answer; and new apps that take longer to
// propagate. Options.Seed (FLYSIM_SEED) makes the faults repeatable for a
// given sequence of calls. ChaosStats counts them.
//
// # Admin endpoints
//
// Under /_flysim/, without authentication:
//
//	POST   /_flysim/faults   body Fault, e.g. {"method":"POST","path":"/v1/apps/{app}/machines","status":503,"count":3}
//	GET    /_flysim/faults   → [Fault] still pending
//	DELETE /_flysim/faults   clears them
//	GET    /_flysim/machines → [{"app":"a","org":"personal","machines":[Machine...]}]
//	                           (destroyed machines only with ?include_deleted=true)
//	POST   /_flysim/apps/{app}/machines/{id}/state  {"state":"stopped"} → Machine
//	GET    /_flysim/calls    → {"POST /v1/apps/{app}/machines": 2, ...}
//	DELETE /_flysim/calls    resets the counters
//	POST   /_flysim/images/health {"image":"...","healthy":false} → {"unhealthy":[images]}
//	GET    /_flysim/images/health → {"unhealthy":[images]}
//	GET    /_flysim/chaos    → {"503": 4, "reset_after": 2, ...}
//
// The same operations exist as Go methods for in-process tests: InjectFault,
// ClearFaults, Machines, Machine, SetState, Calls, ResetCalls and ChaosStats.
//
// # Fault matching
//
// A Fault's Method, when set, must equal the request method. Its Path, when
// set, matches a request when it is either exactly the route pattern the
// request was routed to (for example "/v1/apps/{app}/machines/{id}/start") or
// a literal prefix of the request's URL path (for example
// "/v1/apps/my-app/machines" or "/v1"). Faults apply to /v1 routes only; the
// oldest matching fault is used first, and a call that meets one meets no
// chaos. A faulted call is still counted by Calls. The prefix is literal:
// "/v1/apps/a" also matches "/v1/apps/ab".
//
// A fault answers its status with a Fly-style JSON error (or its body
// verbatim, when given), after delay_ms if given; with no status it only
// delays the call. count 0 means one call, a negative count every call until
// cleared; retry_after (seconds) adds a Retry-After header.
package flysim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Options configures a Server.
type Options struct {
	// Delay is the time a machine spends in each transient state. Zero makes
	// every transition immediate.
	Delay time.Duration
	// Logger receives debug records of transitions and injected faults.
	Logger *slog.Logger
	// UnhealthyImages are images whose machines fail their health checks
	// (see SetImageHealth).
	UnhealthyImages []string
	// Propagation is how long a new app stays unknown to calls that neither
	// created it with ?wait=true nor present its affinity cookie
	// (FLYSIM_PROPAGATION). Zero makes new apps visible at once.
	Propagation time.Duration
	// Chaos is the share of /v1 calls, from 0 to 1, that fail as Fly does
	// when it is unwell (FLYSIM_CHAOS; chaos.go lists how).
	Chaos float64
	// Seed makes chaos repeatable: the same seed gives the same faults to
	// the same sequence of calls (FLYSIM_SEED). Zero picks one at random.
	Seed uint64
	// ChaosSlow is the longest extra time a "slow" or "timeout" fault
	// holds a call; default 2s.
	ChaosSlow time.Duration
}

// Server is the emulator. It is an http.Handler and is safe for concurrent
// use.
type Server struct {
	delay       time.Duration
	propagation time.Duration
	logger      *slog.Logger
	mux         *http.ServeMux
	chaos       *chaos

	mu     sync.Mutex
	apps   map[string]*app
	faults []*Fault
	calls  map[string]int
	// unhealthy holds the images whose machines fail their checks.
	unhealthy map[string]bool
	timers    map[*time.Timer]struct{}
	closed    bool
	done      chan struct{}
	once      sync.Once
}

// New returns an empty emulator.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		delay:       opts.Delay,
		propagation: opts.Propagation,
		chaos:       newChaos(opts),
		logger:      logger,
		mux:         http.NewServeMux(),
		apps:        make(map[string]*app),
		calls:       make(map[string]int),
		unhealthy:   make(map[string]bool),
		timers:      make(map[*time.Timer]struct{}),
		done:        make(chan struct{}),
	}
	for _, img := range opts.UnhealthyImages {
		s.unhealthy[img] = true
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.api("POST /v1/apps", s.createApp)
	s.api("GET /v1/apps", s.listApps)
	s.api("GET /v1/apps/{app}", s.getApp)
	s.api("DELETE /v1/apps/{app}", s.deleteApp)
	s.api("POST /v1/apps/{app}/machines", s.createMachine)
	s.api("GET /v1/apps/{app}/machines", s.listMachines)
	s.api("GET /v1/apps/{app}/machines/{id}", s.getMachine)
	s.api("POST /v1/apps/{app}/machines/{id}", s.updateMachine)
	s.api("DELETE /v1/apps/{app}/machines/{id}", s.destroyMachine)
	s.api("POST /v1/apps/{app}/machines/{id}/start", s.startMachine)
	s.api("POST /v1/apps/{app}/machines/{id}/stop", s.stopMachine)
	s.api("POST /v1/apps/{app}/machines/{id}/restart", s.restartMachine)
	s.api("GET /v1/apps/{app}/machines/{id}/wait", s.waitMachine)
	s.api("POST /v1/apps/{app}/machines/{id}/lease", s.acquireLease)
	s.api("GET /v1/apps/{app}/machines/{id}/lease", s.getLease)
	s.api("DELETE /v1/apps/{app}/machines/{id}/lease", s.releaseLease)
	s.api("POST /v1/apps/{app}/volumes", s.createVolume)
	s.api("GET /v1/apps/{app}/volumes", s.listVolumes)
	s.api("GET /v1/apps/{app}/volumes/{volume}", s.getVolume)
	s.api("DELETE /v1/apps/{app}/volumes/{volume}", s.deleteVolume)

	s.mux.HandleFunc("POST /_flysim/faults", s.adminAddFault)
	s.mux.HandleFunc("GET /_flysim/faults", s.adminListFaults)
	s.mux.HandleFunc("DELETE /_flysim/faults", s.adminClearFaults)
	s.mux.HandleFunc("GET /_flysim/machines", s.adminMachines)
	s.mux.HandleFunc("POST /_flysim/apps/{app}/machines/{id}/state", s.adminSetState)
	s.mux.HandleFunc("GET /_flysim/calls", s.adminCalls)
	s.mux.HandleFunc("DELETE /_flysim/calls", s.adminResetCalls)
	s.mux.HandleFunc("POST /_flysim/images/health", s.adminImageHealth)
	s.mux.HandleFunc("GET /_flysim/images/health", s.adminListImageHealth)
	s.mux.HandleFunc("GET /_flysim/chaos", s.adminChaos)

	// A JSON 404 rather than the mux's plain text, so clients always get a
	// Fly-shaped error.
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "not_found", "no route for %s %s", r.Method, r.URL.Path))
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("fly-request-id", newULID()+"-flysim")
	s.mux.ServeHTTP(w, r)
}

// Close stops pending transitions and releases held wait calls. The Server
// keeps answering, but machines no longer change state on their own.
func (s *Server) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		for t := range s.timers {
			t.Stop()
		}
		clear(s.timers)
		close(s.done)
	})
}

// api registers a /v1 route behind call counting, fault injection (an
// injected Fault first, else chaos) and the authentication check, in that
// order: a faulted call is still a call.
func (s *Server) api(pattern string, h http.HandlerFunc) {
	authed := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			writeError(w, errorf(http.StatusUnauthorized, "unauthorized", "missing Authorization header"))
			return
		}
		if e := checkScheme(r.Header.Get("Authorization")); e != nil {
			writeError(w, e)
			return
		}
		h(w, r)
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[pattern]++
		f := s.takeFaultLocked(r, pattern)
		var cf chaosFault
		if f == nil {
			cf = s.chaos.drawLocked()
		}
		s.mu.Unlock()

		if cf.kind != "" {
			s.logger.Debug("flysim: chaos", "kind", cf.kind, "method", r.Method, "path", r.URL.Path)
			s.serveChaos(w, r, cf, authed)
			return
		}
		if f != nil {
			s.logger.Debug("flysim: injecting fault", "method", r.Method, "path", r.URL.Path,
				"status", f.Status, "delay_ms", f.DelayMS)
			if f.DelayMS > 0 && !pause(r, time.Duration(f.DelayMS)*time.Millisecond) {
				return
			}
			if f.PropagationMS > 0 {
				r = r.WithContext(context.WithValue(r.Context(), propagationKey{},
					propagation{time.Duration(f.PropagationMS) * time.Millisecond, f.Unauthorized}))
			}
			if f.Applied {
				authed(httptest.NewRecorder(), r)
			}
			switch {
			case f.Reset:
				cutConnection(w, true)
				return
			case f.Status != 0:
				writeFault(w, f)
				return
			case f.Applied:
				return // applied, answered with nothing: the connection closes
			}
		}
		authed(w, r)
	})
}

// propagationKey carries a Fault's PropagationMS and Unauthorized to
// createApp, as a propagation.
type propagationKey struct{}

type propagation struct {
	d            time.Duration
	unauthorized bool
}

// checkScheme refuses a macaroon sent under the Bearer scheme: flaps sends
// macaroons (fm1r_, fm1a_, fm2_) with "FlyV1" (fly-go tokens.FlapsHeader),
// and Fly's docs show Bearer only with the older personal tokens. Whether
// the live API still takes a macaroon as Bearer is not documented; flysim
// refuses it so mocd cannot depend on it.
func checkScheme(h string) *apiError {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	for t := range strings.SplitSeq(tok, ",") {
		switch pfx, _, _ := strings.Cut(strings.TrimSpace(t), "_"); pfx {
		case "fm1r", "fm1a", "fm2":
			return errorf(http.StatusUnauthorized, "unauthorized", "macaroon tokens use the FlyV1 authorization scheme, not Bearer")
		}
	}
	return nil
}

// apiError is an answer that is not a success.
type apiError struct {
	code   int
	status string
	msg    string
}

func errorf(code int, status, format string, args ...any) *apiError {
	return &apiError{code: code, status: status, msg: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.code, map[string]string{"error": e.msg, "status": e.status})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"flysim: encoding answer failed","status":"unknown"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func decodeBody(r *http.Request, v any) *apiError {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "invalid", "invalid JSON body: %v", err)
	}
	return nil
}

// crockford is the ULID alphabet.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newULID returns a 26-character ULID-like string (48-bit millisecond time,
// 80 random bits), the shape of Fly's instance ids and request ids.
func newULID() string {
	var b [26]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = crockford[ms&31]
		ms >>= 5
	}
	for i := 10; i < 26; i++ {
		b[i] = crockford[rand.IntN(32)]
	}
	return string(b[:])
}

// newMachineID returns 14 hex characters, the shape of a Fly machine id.
func newMachineID() string {
	return fmt.Sprintf("%014x", rand.Uint64()>>8)
}

func newHex(n int) string {
	const hexdigits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = hexdigits[rand.IntN(16)]
	}
	return string(b)
}

func routePath(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
}
