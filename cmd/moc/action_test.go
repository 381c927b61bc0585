package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/myopenclaw/mocd/testenv"
)

// The GitHub Action's script (scripts/moc-action.sh) run as a shell
// script, as the composite action runs it, against the real `mocd dev`
// binary on a fresh database and a private redis-server.

const repoRoot = "../.."

// build compiles a command of this repository into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repoRoot // default build settings: the build cache of `go build ./...` serves it
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// mocdDev is a running `mocd dev`.
type mocdDev struct {
	bin, apiURL, flyURL string
	env                 []string
}

func startMocdDev(t *testing.T, bin string) *mocdDev {
	t.Helper()
	redis := testenv.StartRedis(t)
	d := &mocdDev{bin: bin, env: append(os.Environ(),
		"DATABASE_URL="+testenv.DatabaseURL(t),
		"REDIS_URL=redis://"+redis.Addr()+"/0",
		"MOC_LISTEN=127.0.0.1:0",
		"FLYSIM_LISTEN=127.0.0.1:0",
		"FLYSIM_DELAY=20ms",
		"MOC_LOG_LEVEL=warn",
		"FLY_API_BASE_URL=", "FLY_FLAPS_BASE_URL=", "FLY_API_TOKEN=",
	)}
	cmd := exec.Command(bin, "dev")
	cmd.Env = d.env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mocd dev stderr:\n%s", stderr.String())
		}
	})
	apiRe := regexp.MustCompile(`API\s+(http://\S+)/api/v1`)
	flyRe := regexp.MustCompile(`Fly API\s+(http://\S+)`)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(2 * time.Minute)
	for d.apiURL == "" || d.flyURL == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("mocd dev ended before it was ready:\n%s", stderr.String())
			}
			if m := apiRe.FindStringSubmatch(line); m != nil {
				d.apiURL = m[1]
			}
			if m := flyRe.FindStringSubmatch(line); m != nil {
				d.flyURL = m[1]
			}
		case <-deadline:
			t.Fatalf("mocd dev not ready after 2 minutes:\n%s", stderr.String())
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	return d
}

// account creates an account with `mocd dev admin` and answers its token.
func (d *mocdDev) account(t *testing.T, email string) string {
	t.Helper()
	cmd := exec.Command(d.bin, "dev", "admin", "create-account", "--email", email, "--plan", "pro", "--json")
	cmd.Env = d.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mocd dev admin create-account: %v", err)
	}
	var acct struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &acct); err != nil || acct.Token == "" {
		t.Fatalf("create-account printed %s (%v)", out, err)
	}
	return acct.Token
}

// actionRun is one run of the action's script.
type actionRun struct {
	code    int
	outputs map[string]string
	stdout  string
	stderr  string
}

func runAction(t *testing.T, env ...string) actionRun {
	t.Helper()
	outFile := filepath.Join(t.TempDir(), "github_output")
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "moc-action.sh"))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GITHUB_OUTPUT=" + outFile}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := actionRun{outputs: map[string]string{}, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	b, _ := os.ReadFile(outFile)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			r.outputs[k] = v
		}
	}
	return r
}

func TestActionAgainstMocdDev(t *testing.T) {
	t.Parallel()
	bins := t.TempDir()
	mocd := build(t, bins, "./cmd/mocd")
	moc := build(t, bins, "./cmd/moc")
	dev := startMocdDev(t, mocd)
	token := dev.account(t, "ci@example.com")
	const sha = "4f1c2a9e8d7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"
	base := []string{"MOC_TOKEN=" + token, "MOC_API_URL=" + dev.apiURL, "GITHUB_SHA=" + sha}
	withBin := func(extra ...string) []string { return slices.Concat(base, []string{"MOC_BIN=" + moc}, extra) }

	// create, building moc from the repository as the action does.
	created := runAction(t, slices.Concat(base, []string{"GITHUB_ACTION_PATH=" + repoRoot, "RUNNER_TEMP=" + t.TempDir(),
		"INPUT_COMMAND=create", "INPUT_SUBDOMAIN=gh-action", "INPUT_REGION=lhr"})...)
	if created.code != 0 || created.outputs["status"] != "succeeded" || !strings.HasPrefix(created.outputs["instance-id"], "inst_") {
		t.Fatalf("create: exit %d, outputs %v\nstdout %s\nstderr %s", created.code, created.outputs, created.stdout, created.stderr)
	}
	inst := created.outputs["instance-id"]

	// The seed's "restart after deploy" step.
	restart := runAction(t, withBin("INPUT_INSTANCE="+inst)...)
	if restart.code != 0 || restart.outputs["status"] != "succeeded" || !strings.HasPrefix(restart.outputs["operation-id"], "op_") || restart.outputs["exit-code"] != "0" {
		t.Fatalf("restart: exit %d, outputs %v, stderr %s", restart.code, restart.outputs, restart.stderr)
	}
	// A re-run of the same commit replays the restart; another commit restarts again.
	again := runAction(t, withBin("INPUT_INSTANCE="+inst)...)
	if again.code != 0 || again.outputs["operation-id"] != restart.outputs["operation-id"] {
		t.Fatalf("re-run of the same commit: operation %s, first was %s", again.outputs["operation-id"], restart.outputs["operation-id"])
	}
	next := runAction(t, withBin("INPUT_INSTANCE="+inst, "GITHUB_SHA=0000000000000000000000000000000000000001")...)
	if next.code != 0 || next.outputs["operation-id"] == restart.outputs["operation-id"] {
		t.Fatalf("another commit: exit %d, operation %s", next.code, next.outputs["operation-id"])
	}

	// 1: the operation failed (the Fly API refuses the restart once).
	injectFault(t, dev.flyURL, `{"method":"POST","path":"/v1/apps/{app}/machines/{id}/restart","status":422}`)
	failed := runAction(t, withBin("INPUT_INSTANCE="+inst, "INPUT_IDEMPOTENCY_KEY=fail-once")...)
	if failed.code != 1 || failed.outputs["status"] != "failed" {
		t.Fatalf("failed restart: exit %d, outputs %v, stderr %s", failed.code, failed.outputs, failed.stderr)
	}
	// 4: the operation outlives the timeout (the Fly API holds the stop).
	injectFault(t, dev.flyURL, `{"method":"POST","path":"/v1/apps/{app}/machines/{id}/stop","delay_ms":4000}`)
	slow := runAction(t, withBin("INPUT_INSTANCE="+inst, "INPUT_COMMAND=stop", "INPUT_TIMEOUT=1s")...)
	if slow.code != 4 || slow.outputs["exit-code"] != "4" || slow.outputs["operation-id"] == "" {
		t.Fatalf("timeout: exit %d, outputs %v, stderr %s", slow.code, slow.outputs, slow.stderr)
	}
	// 3: the API refused the call.
	if r := runAction(t, withBin("INPUT_INSTANCE=inst_doesnotexist")...); r.code != 3 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("unknown instance: exit %d, stderr %s", r.code, r.stderr)
	}
	// 2: bad usage.
	for _, env := range [][]string{
		withBin("INPUT_COMMAND=explode", "INPUT_INSTANCE="+inst),
		withBin("INPUT_COMMAND=restart"),
		withBin("INPUT_INSTANCE="+inst, "INPUT_WAIT=maybe"),
		{"MOC_API_URL=" + dev.apiURL, "MOC_BIN=" + moc, "INPUT_INSTANCE=" + inst},
	} {
		if r := runAction(t, env...); r.code != 2 || r.stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2", env[len(env)-1], r.code, r.stderr)
		}
	}
}

func injectFault(t *testing.T, flyURL, fault string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, flyURL+"/_flysim/faults", strings.NewReader(fault))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("inject fault: %d", resp.StatusCode)
	}
}

// action.yml runs the tested script, passing it every input.
func TestActionYAML(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Inputs map[string]struct {
			Required bool   `yaml:"required"`
			Default  string `yaml:"default"`
		} `yaml:"inputs"`
		Runs struct {
			Using string `yaml:"using"`
			Steps []struct {
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				Env  map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	if err := yaml.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	if a.Runs.Using != "composite" {
		t.Fatalf("runs.using %q", a.Runs.Using)
	}
	script, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "moc-action.sh"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	ran := false
	for _, s := range a.Runs.Steps {
		if !strings.Contains(s.Run, "scripts/moc-action.sh") {
			continue
		}
		ran = true
		for name, v := range s.Env {
			m := regexp.MustCompile(`^\$\{\{ inputs\.([a-z-]+) \}\}$`).FindStringSubmatch(v)
			if m == nil {
				t.Errorf("env %s = %q: not an input", name, v)
				continue
			}
			if _, ok := a.Inputs[m[1]]; !ok {
				t.Errorf("env %s reads undeclared input %s", name, m[1])
			}
			used[m[1]] = true
			if !strings.Contains(string(script), name) {
				t.Errorf("the script never reads %s", name)
			}
		}
	}
	if !ran {
		t.Fatal("no step runs scripts/moc-action.sh")
	}
	for name := range a.Inputs {
		if !used[name] {
			t.Errorf("input %s reaches no step", name)
		}
	}
	if !a.Inputs["token"].Required || a.Inputs["command"].Default != "restart" || a.Inputs["wait"].Default != "true" {
		t.Errorf("inputs %+v", a.Inputs)
	}
}
