package flysim

import (
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"
)

// Chaos fault kinds, as counted by ChaosStats. Each is a way the Machines
// API fails when it is unwell, as its clients see it: flaps retries 502 and
// 503 and network errors, honours Retry-After on 429 (FLY-MACHINES.md);
// "after" kinds apply the change and lose the answer, which is what makes
// retried creates meet name_taken and retried stops meet a stopping machine.
const (
	ChaosUnavailable  = "503"          // 503 with a Fly-style JSON body, nothing done
	ChaosBadGateway   = "502_empty"    // 502 with no body, nothing done (Fly's edge proxy)
	ChaosBadGatewayAf = "502_after"    // the change is applied, the answer is a bodiless 502
	ChaosResetBefore  = "reset_before" // connection reset before anything is done
	ChaosResetAfter   = "reset_after"  // the change is applied, then the connection is reset
	ChaosTimeout      = "timeout"      // held, applied, then the connection is closed unanswered
	ChaosRateLimited  = "429"          // 429 with Retry-After: 1, nothing done
	ChaosSlow         = "slow"         // answered normally after a pause
	ChaosPropagation  = "propagation"  // a new app takes longer to propagate (wait=true or not)
)

// chaosKinds are drawn with equal odds for a call chosen to fail.
var chaosKinds = []string{
	ChaosUnavailable, ChaosBadGateway, ChaosBadGatewayAf, ChaosResetBefore,
	ChaosResetAfter, ChaosTimeout, ChaosRateLimited, ChaosSlow,
}

// chaos draws faults from a seeded generator. Every draw happens under the
// Server's lock, in the order calls arrive, so one seed and one sequence of
// calls always give the same faults.
type chaos struct {
	rate   float64
	slow   time.Duration
	rng    *rand.Rand
	counts map[string]int
}

type chaosFault struct {
	kind string
	hold time.Duration
}

func newChaos(opts Options) *chaos {
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	slow := opts.ChaosSlow
	if slow <= 0 {
		slow = 2 * time.Second
	}
	return &chaos{
		rate:   min(max(opts.Chaos, 0), 1),
		slow:   slow,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		counts: map[string]int{},
	}
}

// drawLocked decides the fate of one /v1 call.
func (c *chaos) drawLocked() chaosFault {
	if c.rate <= 0 || c.rng.Float64() >= c.rate {
		return chaosFault{}
	}
	kind := chaosKinds[c.rng.IntN(len(chaosKinds))]
	c.counts[kind]++
	return chaosFault{kind: kind, hold: time.Duration(c.rng.Int64N(int64(c.slow)) + 1)}
}

// chaosPropagationLocked answers how much longer than usual a new app takes
// to propagate, zero for most, and whether it answers 401 rather than 404
// meanwhile.
func (s *Server) chaosPropagationLocked() (time.Duration, bool) {
	c := s.chaos
	if c.rate <= 0 || c.rng.Float64() >= c.rate {
		return 0, false
	}
	c.counts[ChaosPropagation]++
	return c.slow + time.Duration(c.rng.Int64N(int64(2*c.slow))), c.rng.IntN(2) == 0
}

// ChaosStats answers how many faults of each kind chaos mode has injected.
func (s *Server) ChaosStats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.chaos.counts)
}

// ChaosTotal answers how many faults chaos mode has injected in all.
func (s *Server) ChaosTotal() int {
	n := 0
	for _, v := range s.ChaosStats() {
		n += v
	}
	return n
}

func (s *Server) adminChaos(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.ChaosStats())
}

// serveChaos answers one call the way cf says.
func (s *Server) serveChaos(w http.ResponseWriter, r *http.Request, cf chaosFault, h http.HandlerFunc) {
	switch cf.kind {
	case ChaosSlow:
		if pause(r, cf.hold) {
			h(w, r)
		}
	case ChaosRateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(1))
		writeError(w, errorf(http.StatusTooManyRequests, "rate_limited", "rate limit exceeded, slow down"))
	case ChaosUnavailable:
		writeError(w, errorf(http.StatusServiceUnavailable, "unknown", "service temporarily unavailable"))
	case ChaosBadGateway:
		w.WriteHeader(http.StatusBadGateway)
	case ChaosBadGatewayAf:
		h(httptest.NewRecorder(), r)
		w.WriteHeader(http.StatusBadGateway)
	case ChaosResetBefore:
		cutConnection(w, true)
	case ChaosResetAfter:
		h(httptest.NewRecorder(), r)
		cutConnection(w, true)
	case ChaosTimeout:
		if pause(r, cf.hold) {
			h(httptest.NewRecorder(), r)
		}
		cutConnection(w, false)
	}
}

// pause holds a call for d; false if the caller went away meanwhile.
func pause(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// cutConnection drops the call's connection without an answer: reset
// (RST, as a crashed proxy does) or closed (as a proxy that timed out).
func cutConnection(w http.ResponseWriter, reset bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // HTTP/2: the server resets the stream
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
