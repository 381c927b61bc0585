package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileResult is where a process's CPU time went during one scenario.
type profileResult struct {
	// Process is "api" or "worker".
	Process string
	Path    string
	Run     result
	Total   time.Duration
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

// profileRun runs unit against the running `mocd api` while taking a CPU
// profile of it from its MOC_DEBUG_LISTEN, and analyses the profile.
func (b *bench) profileRun(ctx context.Context, name string, unit func(c *httpClient) unitFunc) profileResult {
	pr, err := b.profileRunErr(ctx, name, unit)
	if err != nil {
		pr.Err = err.Error()
		fmt.Fprintf(os.Stderr, "mocdbench: profile of %s: %v\n", name, err)
	}
	return pr
}

func (b *bench) profileRunErr(ctx context.Context, name string, unit func(c *httpClient) unitFunc) (profileResult, error) {
	if err := b.resetRateLimits(ctx); err != nil {
		return profileResult{}, err
	}
	c := newHTTPClient(b.apiURL, b.opts.clients)
	defer c.close()
	done := b.profileDuring(ctx, name, "api", b.debugAddr)
	spec := b.spec()
	spec.duration += 2 * time.Second // outlast the profile
	return done(drive(ctx, spec, unit(c), nil))
}

// profileDuring starts taking a CPU profile of the process serving pprof on
// addr over the measured window of a scenario that starts now (it waits out
// the warm-up); done hands it the scenario's result and analyses the
// profile.
func (b *bench) profileDuring(ctx context.Context, name, process, addr string) (done func(result) (profileResult, error)) {
	pr := profileResult{Process: process}
	pr.Path = filepath.Join(b.outDir, strings.ReplaceAll(process+" "+name, " ", "-")+".pprof")
	secs := int(b.opts.duration.Seconds())
	prof := make(chan error, 1)
	go func() {
		select {
		case <-time.After(b.opts.warmup):
		case <-ctx.Done():
			prof <- ctx.Err()
			return
		}
		prof <- fetchProfile(ctx, "http://"+addr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), pr.Path)
	}()
	return func(run result) (profileResult, error) {
		pr.Run = run
		if err := <-prof; err != nil {
			return pr, err
		}
		return pr, analyseProfile(ctx, &pr)
	}
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
