package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/myopenclaw/mocd/internal/wirecount"
)

// Fixed secrets of the benchmark's throwaway system.
const (
	benchPepper    = "mocdbench-pepper-0123456789abcdef"
	benchSecretKey = "mocdbench-secret-key-0123456789abcdef"
)

// bench is one run: the infrastructure it started and what it seeded.
type bench struct {
	opts    options
	started time.Time
	outDir  string
	mocd    string // the built mocd binary
	self    string // this harness's binary, re-run for the references
	clean   cleanups
	dbURL   string
	db      *sql.DB
	redis   string // host:port of the private redis-server
	redisP  *proc
	rdb     *redis.Client
	flysim  string // base URL of `mocd flysim`
	flysimP *proc

	// The running api and worker (direct or through counting proxies).
	apiURL string
	apiP   *proc
	// debugAddr and workerDebugAddr are the api's and the worker's
	// MOC_DEBUG_LISTEN (pprof).
	debugAddr, workerDebugAddr string
	workerP                    *proc
	proxies                    map[string]*wirecount.Counter

	idents []*ident
	scale  *ident
	// deepCursor is the cursor of page 1000 of the scale account's
	// operations, found by walking the pages.
	deepCursor string
	walk       result

	// Results.
	counted map[string]countResult
	idle    map[string]wirecount.Counts
	idleFor time.Duration
	timed   map[string]result
	refs    refResults
	// refPasses are the references measured before and after the
	// scenarios; refs is both together.
	refPasses [2]refResults
	profiles  map[string]profileResult
	drain     drainResult
	seedTimes map[string]time.Duration
}

// ident is one seeded business account: its keys, instances, and one
// finished operation created with a known Idempotency-Key (what the poll
// and replay scenarios ask for again).
type ident struct {
	n          int
	accountID  string
	tokens     []string
	instances  []string
	setupOp    string
	setupPath  string
	setupIdemp string
}

// mocdEnv is the environment of every mocd process: production mode with
// fixed secrets, plain HTTP on loopback, the Fly API of `mocd flysim`.
func (b *bench) mocdEnv(dbURL, redisAddr, listen string) []string {
	env := []string{
		"DATABASE_URL=" + dbURL,
		"REDIS_URL=redis://" + redisAddr + "/0",
		"MOC_PEPPER=" + benchPepper,
		"MOC_SECRET_KEY=" + benchSecretKey,
		"MOC_INSECURE_HTTP=true",
		"FLYSIM_DELAY=0s",
		"FLY_API_TOKEN=flysim",
		// Several workers may run at once: each serves /metrics on a port
		// of its own.
		"MOC_METRICS_LISTEN=127.0.0.1:0",
	}
	if b.flysim != "" {
		env = append(env, "FLY_API_BASE_URL="+b.flysim)
	}
	if listen != "" {
		env = append(env, "MOC_LISTEN="+listen, "FLYSIM_LISTEN="+listen)
	}
	return env
}

// setup builds mocd and starts Postgres database, Redis and flysim.
func (b *bench) setup(ctx context.Context) error {
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return err
	}
	// Logs of a previous run would mix with this one's.
	for _, name := range []string{"api", "worker", "flysim", "redis", "api-counted", "worker-counted", "api-profiled", "gin"} {
		os.Remove(filepath.Join(b.outDir, name+".log"))
	}
	b.step("build mocd")
	b.mocd = filepath.Join(b.outDir, "mocd")
	build := exec.CommandContext(ctx, "go", "build", "-o", b.mocd, "./cmd/mocd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/mocd: %w\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.self = self

	b.step("fresh database, private redis-server")
	dbURL, drop, err := createDatabase(ctx, "mocd_bench_")
	if err != nil {
		return err
	}
	b.clean.add(drop)
	b.dbURL = dbURL
	if b.db, err = sql.Open("postgres", dbURL); err != nil {
		return err
	}
	b.clean.add(func() { b.db.Close() })
	rp, addr, err := startRedis(ctx, b.outDir)
	if err != nil {
		return err
	}
	b.clean.add(func() { rp.stop(5 * time.Second) })
	b.redisP, b.redis = rp, addr
	b.rdb = redis.NewClient(&redis.Options{Addr: addr})
	b.clean.add(func() { b.rdb.Close() })

	b.step("mocd migrate")
	if err := b.mocdRun(ctx, b.mocdEnv(b.dbURL, b.redis, ""), nil, "migrate"); err != nil {
		return err
	}

	listen, err := freeAddr()
	if err != nil {
		return err
	}
	fp, err := startProc(b.outDir, "flysim", b.mocdEnv(b.dbURL, b.redis, listen), b.mocd, "flysim")
	if err != nil {
		return err
	}
	b.clean.add(func() { fp.stop(10 * time.Second) })
	b.flysimP, b.flysim = fp, "http://"+listen
	// flysim answers 404 on /; any HTTP answer means it listens.
	return waitFor(ctx, 30*time.Second, func() error {
		if fp.exited() {
			return permanent{fmt.Errorf("mocd flysim exited (see %s)", fp.log)}
		}
		res, err := httpGet(b.flysim + "/v1/apps/none")
		if err == nil {
			res.Body.Close()
		}
		return err
	})
}

// mocdRun runs a one-shot mocd command; stdout, when given, receives its
// output.
func (b *bench) mocdRun(ctx context.Context, env []string, stdout *bytes.Buffer, args ...string) error {
	cmd := exec.CommandContext(ctx, b.mocd, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mocd %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// startSystem starts `mocd api` and `mocd worker`. counted puts each one's
// Postgres and Redis connections behind counting proxies.
func (b *bench) startSystem(ctx context.Context, counted bool) error {
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	apiDB, apiRedis, workerDB, workerRedis := withAppName(b.dbURL, appAPI), b.redis, withAppName(b.dbURL, appWorker), b.redis
	suffix := ""
	if counted {
		suffix = "-counted"
		b.proxies = map[string]*wirecount.Counter{}
		pgAddr, err := hostPort(b.dbURL)
		if err != nil {
			return err
		}
		for _, name := range []string{"api-pg", "api-redis", "worker-pg", "worker-redis"} {
			proto, target := wirecount.Postgres, pgAddr
			if strings.HasSuffix(name, "redis") {
				proto, target = wirecount.Redis, b.redis
			}
			w, err := wirecount.Start(proto, target)
			if err != nil {
				return err
			}
			b.proxies[name] = w
			b.clean.add(w.Close)
		}
		if apiDB, err = withHost(apiDB, b.proxies["api-pg"].Addr()); err != nil {
			return err
		}
		if workerDB, err = withHost(workerDB, b.proxies["worker-pg"].Addr()); err != nil {
			return err
		}
		apiRedis, workerRedis = b.proxies["api-redis"].Addr(), b.proxies["worker-redis"].Addr()
	}
	if b.workerDebugAddr, err = freeAddr(); err != nil {
		return err
	}
	workerEnv := append(b.mocdEnv(workerDB, workerRedis, ""), "MOC_DEBUG_LISTEN="+b.workerDebugAddr)
	wp, err := startProc(b.outDir, "worker"+suffix, workerEnv, b.mocd, "worker")
	if err != nil {
		return err
	}
	b.workerP = wp
	b.clean.add(func() { wp.stop(15 * time.Second) })
	// pprof of the real binary, on loopback (MOC_DEBUG_LISTEN): what the
	// profile runs read.
	if b.debugAddr, err = freeAddr(); err != nil {
		return err
	}
	apiEnv := append(b.mocdEnv(apiDB, apiRedis, listen), "MOC_DEBUG_LISTEN="+b.debugAddr)
	ap, err := startProc(b.outDir, "api"+suffix, apiEnv, b.mocd, "api")
	if err != nil {
		return err
	}
	b.apiP = ap
	b.clean.add(func() { ap.stop(15 * time.Second) })
	b.apiURL = "http://" + listen
	return waitHTTP(ctx, ap, b.apiURL+"/readyz")
}

// stopSystem stops the api and the worker.
func (b *bench) stopSystem() {
	var wg sync.WaitGroup
	for _, p := range []*proc{b.apiP, b.workerP} {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(15 * time.Second) }()
	}
	wg.Wait()
	for _, w := range b.proxies {
		w.Close()
	}
}

// resetRateLimits deletes the limiter's buckets, so that every scenario
// starts with full allowances: the limiter runs on every request but
// refuses none unless a scenario outruns its accounts (429s are counted).
func (b *bench) resetRateLimits(ctx context.Context) error {
	iter := b.rdb.Scan(ctx, 0, "moc:rl:*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scan rate-limit keys: %w", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := b.rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			return fmt.Errorf("reset rate limits: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// seed creates the accounts (with `mocd admin create-account`), their
// extra keys and instances (through the API), one finished operation per
// account, and the scale account with its million operations.
func (b *bench) seed(ctx context.Context) error {
	c := newHTTPClient(b.apiURL, 8)
	defer c.close()
	n := b.opts.clients * b.opts.accountsPerClient
	b.step(fmt.Sprintf("seed %d business accounts × %d keys × %d instances", n, b.opts.keysPerAccount, b.opts.instancesPerAccount))
	t0 := time.Now()
	b.idents = make([]*ident, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range n {
		g.Go(func() error {
			id, err := b.newAccount(gctx, c, i, b.opts.instancesPerAccount)
			b.idents[i] = id
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := b.waitOperations(ctx, 2*time.Minute); err != nil {
		return err
	}
	// One restart per account with a known Idempotency-Key, sent once by
	// each of its API keys (keys are scoped to the API key that sent them):
	// poll reads the first one's operation, replay repeats the request with
	// any of the account's keys.
	for _, id := range b.idents {
		id.setupPath = "/api/v1/instances/" + id.instances[0] + "/restart"
		id.setupIdemp = fmt.Sprintf("setup-%d", id.n)
		for k, tok := range id.tokens {
			var op struct{ ID string }
			if _, err := c.doJSON(ctx, "POST", id.setupPath, tok, id.setupIdemp, nil, &op); err != nil {
				return err
			}
			if k == 0 {
				id.setupOp = op.ID
			}
		}
	}
	if err := b.waitOperations(ctx, 2*time.Minute); err != nil {
		return err
	}
	b.seedTimes["accounts, keys, instances"] = time.Since(t0)

	b.step(fmt.Sprintf("seed the scale account with %d operations (INSERT … SELECT generate_series)", b.opts.scaleOps))
	t0 = time.Now()
	sc, err := b.newAccount(ctx, c, n, 0)
	if err != nil {
		return err
	}
	if sc.instances, err = insertInstances(ctx, b.db, sc.accountID, "scale", 10); err != nil {
		return err
	}
	if err := seedOperations(ctx, b.dbURL, sc.accountID, sc.instances, b.opts.scaleOps); err != nil {
		return err
	}
	b.scale = sc
	b.seedTimes[fmt.Sprintf("%d operations", b.opts.scaleOps)] = time.Since(t0)
	return b.resetRateLimits(ctx)
}

// newAccount creates business account number i with its keys and
// instances; the first key is the one `mocd admin` prints.
func (b *bench) newAccount(ctx context.Context, c *httpClient, i, instances int) (*ident, error) {
	var out bytes.Buffer
	err := b.mocdRun(ctx, b.mocdEnv(b.dbURL, b.redis, ""), &out, "admin", "create-account",
		"--email", fmt.Sprintf("bench-%d@example.com", i), "--plan", "business", "--json")
	if err != nil {
		return nil, err
	}
	var acct struct {
		AccountID string `json:"account_id"`
		Token     string `json:"token"`
	}
	if err := json.Unmarshal(out.Bytes(), &acct); err != nil {
		return nil, fmt.Errorf("create-account printed %q: %w", out.String(), err)
	}
	id := &ident{n: i, accountID: acct.AccountID, tokens: []string{acct.Token}}
	for k := 1; k < b.opts.keysPerAccount; k++ {
		var key struct{ Token string }
		if _, err := c.doJSON(ctx, "POST", "/api/v1/keys", acct.Token, "",
			map[string]any{"name": fmt.Sprintf("bench-%d", k), "scopes": []string{"full"}}, &key); err != nil {
			return nil, err
		}
		id.tokens = append(id.tokens, key.Token)
	}
	for j := range instances {
		var op struct {
			InstanceID string `json:"instance_id"`
		}
		if _, err := c.doJSON(ctx, "POST", "/api/v1/instances", acct.Token, "",
			map[string]string{"subdomain": fmt.Sprintf("bench-%d-%d", i, j)}, &op); err != nil {
			return nil, err
		}
		id.instances = append(id.instances, op.InstanceID)
	}
	return id, nil
}

// countUnfinished counts the pending and running operations from the
// partial index operations_unfinished, whose guard "seq > 0" it states
// (migration 00012).
const countUnfinished = `SELECT count(*) FROM operations WHERE status IN ('pending', 'running') AND seq > 0`

// waitOperations waits until no operation is pending or running; a failed
// one is an error (the benchmark would measure something broken).
func (b *bench) waitOperations(ctx context.Context, timeout time.Duration) error {
	err := waitFor(ctx, timeout, func() error {
		var unfinished int
		err := b.db.QueryRowContext(ctx, countUnfinished).Scan(&unfinished)
		if err != nil {
			return permanent{err}
		}
		if unfinished > 0 {
			return fmt.Errorf("%d operations still unfinished after %s", unfinished, timeout)
		}
		return nil
	})
	if err != nil {
		var perm permanent
		if errors.As(err, &perm) {
			return perm.error
		}
		return err
	}
	var failed int
	if err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM operations WHERE status = 'failed'`).Scan(&failed); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d operations failed (see %s)", failed, b.workerP.log)
	}
	return nil
}

// hostPort is the host:port a database URL connects to.
func hostPort(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5432"), nil
	}
	return u.Host, nil
}

// withHost is dbURL connecting to addr instead.
func withHost(dbURL, addr string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	u.Host = addr
	return u.String(), nil
}

// httpGet is a GET with a short timeout, for readiness checks.
func httpGet(url string) (*http.Response, error) {
	c := http.Client{Timeout: 2 * time.Second}
	return c.Get(url)
}

// step prints the phase the run is in, with the time since the start.
func (b *bench) step(msg string) {
	fmt.Fprintf(os.Stderr, "mocdbench %5.1fs: %s\n", time.Since(b.started).Seconds(), msg)
}
