package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
)

// The api has no pprof endpoint, and a profiling endpoint is not something
// to add to the product for a benchmark. So the profile run uses this
// harness's own binary as the api: `mocdbench serve-api` builds the api
// from the same packages and the same environment as `mocd api` does
// (cmd/mocd/api.go's newAPI and serveHTTP: keep the two in step), and adds
// net/http/pprof on MOCDBENCH_PPROF_LISTEN. The figures of the report come
// from the real `mocd api`; this process only says where its time goes.

// serveAPI is `mocdbench serve-api`.
func serveAPI(ctx context.Context) error {
	cfg, err := config.Load(config.ModeProd, os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	ropts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	ropts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	aopt, err := asynq.ParseRedisURI(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	client := asynq.NewClient(aopt)
	defer client.Close()
	srv := api.New(api.Options{
		Store:          st,
		Redis:          rdb,
		Limiter:        ratelimit.New(rdb, ratelimit.Options{}),
		Pepper:         []byte(cfg.Pepper),
		Logger:         log,
		AllowPlainHTTP: cfg.InsecureHTTP,
		TrustedProxies: cfg.TrustedProxies,
		Enqueuer:       client,
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { srv.Run(gctx); return nil })
	g.Go(func() error { return serve(gctx, cfg.Listen, srv.Handler()) })
	g.Go(func() error { return serve(gctx, os.Getenv("MOCDBENCH_PPROF_LISTEN"), mux) })
	return g.Wait()
}

// serve is cmd/mocd's serveHTTP without TLS: the same server timeouts.
func serve(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// profileResult is where the api's CPU time went during one scenario.
type profileResult struct {
	Path  string
	Run   result
	Total time.Duration
	// Flat is the top functions by time spent in them.
	Flat []fnCost
	// ByLibrary charges each sample to the first frame, leaf upwards, of a
	// library (or of mocd), so that a socket write counts for lib/pq or
	// net/http, whichever made it; shares add up to 100%.
	ByLibrary []fnCost
	// ByMocd charges each sample to the innermost mocd function on its
	// stack: the part of mocd that asked for the work.
	ByMocd []fnCost
	// Syscalls and Alloc are cross-cutting shares: samples in a system
	// call, and samples allocating or collecting garbage.
	Syscalls, Alloc time.Duration
	Err             string
}

type fnCost struct {
	Name string
	Time time.Duration
}

// libraries are matched against each frame, leaf upwards; the first hit
// takes the sample. Generic packages (runtime, sync, bufio, net, reflect…)
// match none, so their time goes to the library that called them.
var libraries = []struct {
	name string
	re   *regexp.Regexp
}{
	{"Postgres client (lib/pq, database/sql, sqlx)", regexp.MustCompile(`^(github\.com/lib/pq|database/sql|github\.com/jmoiron/sqlx)`)},
	{"Redis client (go-redis) and Asynq", regexp.MustCompile(`^(github\.com/redis/go-redis|github\.com/hibiken/asynq)`)},
	{"net/http server and Gin", regexp.MustCompile(`^(net/http\.|github\.com/gin-gonic)`)},
	{"access log (log/slog)", regexp.MustCompile(`^log/slog`)},
	{"JSON (encoding/json)", regexp.MustCompile(`^encoding/json`)},
	{"crypto (HMAC-SHA256, crypto/rand)", regexp.MustCompile(`^crypto/`)},
	{"Prometheus metrics", regexp.MustCompile(`^github\.com/prometheus`)},
	{"mocd's own code", regexp.MustCompile(`^github\.com/myopenclaw/mocd/`)},
}

// Samples without any library frame are the runtime's own work.
var (
	reGC        = regexp.MustCompile(`^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge|gcMarkDone|gcStart)`)
	reScheduler = regexp.MustCompile(`^runtime\.(mcall|schedule|findRunnable|park_m|goexit0|mstart)`)
	reSyscall   = regexp.MustCompile(`^(syscall\.|internal/runtime/syscall|runtime\.(futex|epollwait|netpoll|usleep|write1|read))`)
	reAlloc     = regexp.MustCompile(`^runtime\.(mallocgc|gcAssist|gcBgMarkWorker|bgsweep|memclrNoHeapPointers)`)
)

// profileRun runs unit against a `mocdbench serve-api` process while
// taking a CPU profile of it, and analyses the profile.
func (b *bench) profileRun(ctx context.Context, name string, unit func(c *httpClient) unitFunc) profileResult {
	pr, err := b.profileRunErr(ctx, name, unit)
	if err != nil {
		pr.Err = err.Error()
		fmt.Fprintf(os.Stderr, "mocdbench: profile of %s: %v\n", name, err)
	}
	return pr
}

func (b *bench) profileRunErr(ctx context.Context, name string, unit func(c *httpClient) unitFunc) (profileResult, error) {
	var pr profileResult
	listen, err := freeAddr()
	if err != nil {
		return pr, err
	}
	pprofAddr, err := freeAddr()
	if err != nil {
		return pr, err
	}
	env := append(b.mocdEnv(withAppName(b.dbURL, appAPI), b.redis, listen), "MOCDBENCH_PPROF_LISTEN="+pprofAddr)
	p, err := startProc(b.outDir, "api-profiled", env, b.self, "serve-api")
	if err != nil {
		return pr, err
	}
	defer p.stop(15 * time.Second)
	base := "http://" + listen
	if err := waitHTTP(ctx, p, base+"/readyz"); err != nil {
		return pr, err
	}
	if err := b.resetRateLimits(ctx); err != nil {
		return pr, err
	}
	c := newHTTPClient(base, b.opts.clients)
	defer c.close()
	// The profile covers the measured window: it starts after the warm-up.
	secs := int(b.opts.duration.Seconds())
	prof := make(chan error, 1)
	pr.Path = filepath.Join(b.outDir, strings.ReplaceAll(name, " ", "-")+".pprof")
	go func() {
		select {
		case <-time.After(b.opts.warmup):
		case <-ctx.Done():
			prof <- ctx.Err()
			return
		}
		prof <- fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), pr.Path)
	}()
	spec := b.spec()
	spec.duration += 2 * time.Second // outlast the profile
	pr.Run = drive(ctx, spec, unit(c), nil)
	if err := <-prof; err != nil {
		return pr, err
	}
	return pr, analyseProfile(ctx, &pr)
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("GET %s: %d %s", url, res.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// analyseProfile reads every sampled stack (`go tool pprof -traces`) and
// totals them by leaf function, by library and by innermost mocd function.
func analyseProfile(ctx context.Context, pr *profileResult) error {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", pr.Path).Output()
	if err != nil {
		return fmt.Errorf("go tool pprof -traces: %w", err)
	}
	stacks, err := parseTraces(out)
	if err != nil {
		return err
	}
	flat := map[string]time.Duration{}
	lib := map[string]time.Duration{}
	mocd := map[string]time.Duration{}
	for _, s := range stacks {
		pr.Total += s.value
		flat[s.frames[0]] += s.value
		lib[libraryOf(s.frames)] += s.value
		inner := "(no mocd frame: net/http connection handling, runtime)"
		for _, f := range s.frames {
			if strings.HasPrefix(f, "github.com/myopenclaw/mocd/") {
				inner = strings.TrimPrefix(f, "github.com/myopenclaw/mocd/")
				break
			}
		}
		mocd[inner] += s.value
		if reSyscall.MatchString(s.frames[0]) {
			pr.Syscalls += s.value
		}
		if slices.ContainsFunc(s.frames, reAlloc.MatchString) {
			pr.Alloc += s.value
		}
	}
	pr.Flat = topCosts(flat, 12)
	pr.ByLibrary = topCosts(lib, 20)
	pr.ByMocd = topCosts(mocd, 14)
	return nil
}

func libraryOf(frames []string) string {
	for _, f := range frames {
		for _, l := range libraries {
			if l.re.MatchString(f) {
				return l.name
			}
		}
	}
	switch {
	case slices.ContainsFunc(frames, reGC.MatchString):
		return "garbage collection (background)"
	case slices.ContainsFunc(frames, reScheduler.MatchString):
		return "goroutine scheduling"
	}
	return "other runtime"
}

type stack struct {
	value  time.Duration
	frames []string // leaf first
}

// parseTraces reads `go tool pprof -traces` output: blocks separated by
// dashed lines, the first line of each holding the sample's value and the
// leaf function, the following lines its callers.
func parseTraces(out []byte) ([]stack, error) {
	var stacks []stack
	var cur *stack
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			if cur != nil && len(cur.frames) > 0 {
				stacks = append(stacks, *cur)
			}
			cur = &stack{}
			continue
		}
		if cur == nil {
			continue // the header
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.Contains(trimmed, ":") && !strings.Contains(trimmed, ".") {
			continue
		}
		if len(cur.frames) == 0 {
			f := strings.Fields(trimmed)
			if len(f) < 2 {
				continue
			}
			d, err := time.ParseDuration(f[0])
			if err != nil {
				continue // a label line
			}
			cur.value = d
			cur.frames = append(cur.frames, f[1])
			continue
		}
		cur.frames = append(cur.frames, strings.Fields(trimmed)[0])
	}
	if cur != nil && len(cur.frames) > 0 {
		stacks = append(stacks, *cur)
	}
	if len(stacks) == 0 {
		return nil, errors.New("the profile holds no samples")
	}
	return stacks, sc.Err()
}

// topCosts is the n largest entries, largest first.
func topCosts(m map[string]time.Duration, n int) []fnCost {
	var out []fnCost
	for k, v := range m {
		out = append(out, fnCost{k, v})
	}
	slices.SortFunc(out, func(a, b fnCost) int {
		if a.Time != b.Time {
			return int(b.Time - a.Time)
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
