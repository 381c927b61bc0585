package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is a child process the harness started. Children get their own
// process group, so that a Ctrl-C reaches only the harness, which then
// stops them in order; Pdeathsig kills them if the harness itself is killed.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc runs argv with exactly env (plus PATH and HOME), its output
// appended to <outDir>/<name>.log.
func startProc(outDir, name string, env []string, argv ...string) (*proc, error) {
	logPath := filepath.Join(outDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM: mocd drains and exits) and kills
// it if it has not within grace.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cleanups is a stack of stop functions run in reverse order exactly once,
// on success, failure or Ctrl-C alike.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeAddr is 127.0.0.1:<a free port>.
func freeAddr() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// startRedis runs a private redis-server on a free loopback port, keeping
// nothing on disk, as testenv.StartRedis does for tests.
func startRedis(ctx context.Context, outDir string) (*proc, string, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, "", errors.New("redis-server not found on PATH (run scripts/services.sh, which installs it)")
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "mocdbench-redis-")
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(outDir, "redis", nil, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "")
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	go func() { <-p.done; os.RemoveAll(dir) }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	err = waitFor(ctx, 10*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return c.Ping(pctx).Err()
	})
	if err != nil {
		p.stop(time.Second)
		return nil, "", fmt.Errorf("redis-server on %s did not answer: %w", addr, err)
	}
	return p, addr, nil
}

// waitFor calls fn every 50ms until it returns nil or a permanent error, or
// the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		var perm permanent
		if err == nil || errors.As(err, &perm) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHTTP waits until GET url answers 200, or p exits.
func waitHTTP(ctx context.Context, p *proc, url string) error {
	return waitFor(ctx, 30*time.Second, func() error {
		if p != nil && p.exited() {
			return permanent{fmt.Errorf("%s exited: %v (see %s)", p.name, p.err, p.log)}
		}
		res, err := http.Get(url)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d", url, res.StatusCode)
		}
		return nil
	})
}

// permanent is an error waitFor does not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }
