package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/myopenclaw/mocd/e2e"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/testenv"
)

// TestInstancesLifecycle drives one instance through every lifecycle
// command with --wait, then checks operations get/list/wait and the
// replay of an --idempotency-key.
func TestInstancesLifecycle(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	moc := newCLI(t, sys, token)

	var create operation
	moc.ok(&create, "instances", "create", "--subdomain", "cli-claw", "--region", "lhr", "--wait")
	if create.Type != "instance.create" || create.Status != "succeeded" {
		t.Fatalf("create --wait printed %+v", create)
	}
	id := create.InstanceID

	var list []instance
	moc.ok(&list, "instances", "list")
	if len(list) != 1 || list[0].ID != id || list[0].Status != "running" || list[0].FlyRegion != "lhr" {
		t.Fatalf("instances list: %+v", list)
	}

	for _, step := range []struct{ call, status string }{{"stop", "stopped"}, {"start", "running"}, {"restart", "running"}} {
		var op operation
		moc.ok(&op, "instances", step.call, id, "--wait", "--timeout", "1m")
		if op.Status != "succeeded" || op.Type != "instance."+step.call {
			t.Fatalf("%s --wait printed %+v", step.call, op)
		}
		// --wait returned when the operation ended: the instance is settled.
		var inst instance
		moc.ok(&inst, "instances", "get", id)
		if inst.Status != step.status {
			t.Fatalf("after %s --wait the instance is %s, want %s", step.call, inst.Status, step.status)
		}
	}

	// Without --wait: the accepted operation, then `operations wait`.
	var pending, waited, got operation
	moc.ok(&pending, "instances", "stop", id, "--idempotency-key", "deploy-1234")
	if pending.Status != "pending" {
		t.Fatalf("stop without --wait printed %+v", pending)
	}
	moc.ok(&waited, "operations", "wait", pending.ID, "--timeout", "1m")
	moc.ok(&got, "operations", "get", pending.ID)
	if waited.Status != "succeeded" || got.Status != "succeeded" || got.ID != pending.ID {
		t.Fatalf("operations wait %+v, get %+v", waited, got)
	}
	// The same key again: the first answer, not a second stop.
	var replay operation
	moc.ok(&replay, "instances", "stop", id, "--idempotency-key", "deploy-1234", "--wait")
	if replay.ID != pending.ID {
		t.Fatalf("the same --idempotency-key made operation %s, first was %s", replay.ID, pending.ID)
	}
	// The same key on another call is the API's 422: exit 3.
	r := moc.fails(exitAPI, "instances", "start", id, "--idempotency-key", "deploy-1234")
	if !strings.Contains(r.stderr, "idempotency_key_reused") {
		t.Errorf("stderr %q does not name the code", r.stderr)
	}

	var all, two []operation
	moc.ok(&all, "operations", "list", "--instance", id, "--all")
	if len(all) != 5 || all[0].ID != pending.ID || all[4].ID != create.ID {
		t.Fatalf("operations list --all: %d operations, newest %+v", len(all), all)
	}
	// --limit walks pages of the API's size: 3 items over pages of 3, then 1.
	moc.ok(&two, "operations", "list", "--limit", "2", "--status", "succeeded")
	if len(two) != 2 || two[0].ID != all[0].ID || two[1].ID != all[1].ID {
		t.Fatalf("operations list --limit 2: %+v", two)
	}

	var del operation
	moc.ok(&del, "instances", "delete", id, "--wait")
	if del.Status != "succeeded" || del.Type != "instance.delete" {
		t.Fatalf("delete --wait printed %+v", del)
	}
	r = moc.fails(exitAPI, "instances", "get", id)
	if !strings.Contains(r.stderr, "404 not_found") || !strings.Contains(r.stderr, "request req_") {
		t.Errorf("a deleted instance: stderr %q", r.stderr)
	}
}

// TestExitCodes: 1 a failed operation, 2 bad usage, 3 the API refused,
// 4 a timeout, each with what a script needs on stdout.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	moc := newCLI(t, sys, token)
	var create operation
	moc.ok(&create, "instances", "create", "--subdomain", "exit-codes", "--wait")
	id := create.InstanceID

	t.Run("1 failed operation", func(t *testing.T) {
		sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines/{id}/restart", Status: http.StatusUnprocessableEntity, Count: 1})
		r := moc.fails(exitFailed, "instances", "restart", id, "--wait")
		var op operation
		r.JSON(t, &op)
		if op.Status != "failed" || op.Error == nil || op.Error.Code != "fly_rejected" {
			t.Fatalf("stdout %+v", op)
		}
		if !strings.Contains(r.stderr, "failed: fly_rejected") {
			t.Errorf("stderr %q", r.stderr)
		}
		// The instance is usable again.
		moc.ok(nil, "instances", "start", id, "--wait")
	})

	t.Run("2 bad usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"instances", "frobnicate"},
			{"nonsense"},
			{"instances", "get"},
			{"instances", "restart", "a", "b"},
			{"instances", "create"},
			{"instances", "list", "--bogus-flag"},
			{"instances", "restart", id, "--timeout", "soon"},
			{"-o", "yaml", "instances", "list"},
			{"operations", "list", "--limit", "0"},
			{"keys", "create", "--name", "x"},
			{"webhooks", "listen", "--forward-to", "not a url"},
		} {
			r := moc.run(args...)
			if r.code != exitUsage || r.stderr == "" {
				t.Errorf("moc %s: exit %d, stderr %q; want 2 and a message", strings.Join(args, " "), r.code, r.stderr)
			}
		}
		r := moc.with("MOC_TOKEN", "").fails(exitUsage, "instances", "list")
		if !strings.Contains(r.stderr, "MOC_TOKEN") {
			t.Errorf("no token: stderr %q", r.stderr)
		}
	})

	t.Run("3 the API refused", func(t *testing.T) {
		r := moc.fails(exitAPI, "instances", "get", "inst_doesnotexist")
		if !strings.Contains(r.stderr, "not_found") {
			t.Errorf("stderr %q", r.stderr)
		}
		moc.fails(exitAPI, "instances", "create", "--subdomain", "exit-codes") // 409 subdomain_taken
		moc.fails(exitAPI, "instances", "create", "--subdomain", "www")        // 400 reserved
		r = moc.with("MOC_TOKEN", "moc_nokey_000000000000000000000000000000000000").fails(exitAPI, "account")
		if !strings.Contains(r.stderr, "401 unauthorized") {
			t.Errorf("bad token: stderr %q", r.stderr)
		}
		readOnly := newCLI(t, sys, sys.NewKey(t, mustAccount(t, sys, moc), "read-only"))
		r = readOnly.fails(exitAPI, "instances", "restart", id)
		if !strings.Contains(r.stderr, "insufficient_scope") {
			t.Errorf("read-only key: stderr %q", r.stderr)
		}
		// Nothing listens there: the API cannot be reached.
		moc.with("MOC_API_URL", "http://127.0.0.1:1").fails(exitAPI, "account")
	})

	t.Run("4 timeout", func(t *testing.T) {
		// No worker: the operation stays pending past --timeout.
		sys.StopWorker()
		defer sys.StartWorker()
		r := moc.fails(exitTimeout, "instances", "restart", id, "--wait", "--timeout", "1500ms")
		var op operation
		r.JSON(t, &op)
		if op.Status != "pending" || op.Type != "instance.restart" {
			t.Fatalf("stdout after the timeout: %+v", op)
		}
		if !strings.Contains(r.stderr, "timed out after 1.5s") {
			t.Errorf("stderr %q", r.stderr)
		}
	})
}

// mustAccount answers the account id of moc's token.
func mustAccount(t *testing.T, sys *e2e.System, moc *cli) string {
	t.Helper()
	var acct struct {
		ID string `json:"id"`
	}
	moc.ok(&acct, "account")
	return acct.ID
}

func TestKeysWebhooksLogsUsageAccount(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	moc := newCLI(t, sys, token)

	var acct struct {
		Plan          string `json:"plan"`
		InstanceLimit int    `json:"instance_limit"`
	}
	moc.ok(&acct, "account")
	if acct.Plan != "pro" || acct.InstanceLimit != 6 {
		t.Fatalf("account %+v", acct)
	}

	// keys create / list / rotate / revoke
	var key struct {
		ID     string   `json:"id"`
		Token  string   `json:"token"`
		Scopes []string `json:"scopes"`
	}
	moc.ok(&key, "keys", "create", "--name", "ci", "--scopes", "read-only,instance:write", "--expires-in", "720h")
	if !strings.HasPrefix(key.Token, "moc_") || len(key.Scopes) != 8 {
		t.Fatalf("keys create: %+v", key)
	}
	ci := moc.with("MOC_TOKEN", key.Token)
	ci.ok(nil, "instances", "list")
	var keys []struct {
		ID string `json:"id"`
	}
	moc.ok(&keys, "keys", "list")
	if len(keys) != 2 {
		t.Fatalf("keys list: %+v", keys)
	}
	var rotated struct {
		ID, Token string
	}
	moc.ok(&rotated, "keys", "rotate", key.ID)
	if rotated.ID != key.ID || rotated.Token == key.Token {
		t.Fatalf("keys rotate: %+v", rotated)
	}
	ci.fails(exitAPI, "instances", "list") // the old token is refused
	ci = moc.with("MOC_TOKEN", rotated.Token)
	ci.ok(nil, "instances", "list")
	var revoked done
	moc.ok(&revoked, "keys", "revoke", key.ID)
	if !revoked.Revoked || revoked.ID != key.ID {
		t.Fatalf("keys revoke printed %+v", revoked)
	}
	ci.fails(exitAPI, "instances", "list")

	// webhooks create / list / test / deliveries / delete, to a real receiver
	var mu sync.Mutex
	var got []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("webhook-id"))
		mu.Unlock()
	}))
	defer recv.Close()
	var wh struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	moc.ok(&wh, "webhooks", "create", "--url", recv.URL+"/hook", "--events", "operation.succeeded,operation.failed")
	if !strings.HasPrefix(wh.Secret, "whsec_") {
		t.Fatalf("webhooks create: %+v", wh)
	}
	var whs []struct {
		ID string `json:"id"`
	}
	moc.ok(&whs, "webhooks", "list")
	if len(whs) != 1 || whs[0].ID != wh.ID {
		t.Fatalf("webhooks list: %+v", whs)
	}
	var test struct {
		ID        string `json:"id"`
		EventType string `json:"event_type"`
	}
	moc.ok(&test, "webhooks", "test", wh.ID)
	if test.EventType != "webhook.test" {
		t.Fatalf("webhooks test: %+v", test)
	}
	testenv.Eventually(t, "the test delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1 && got[0] == test.ID
	})
	testenv.Eventually(t, "the delivery recorded as succeeded", func() bool {
		var dl []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		moc.ok(&dl, "webhooks", "deliveries", wh.ID, "--status", "succeeded")
		return len(dl) == 1 && dl[0].ID == test.ID
	})
	var deleted done
	moc.ok(&deleted, "webhooks", "delete", wh.ID)
	if !deleted.Deleted {
		t.Fatalf("webhooks delete printed %+v", deleted)
	}
	moc.fails(exitAPI, "webhooks", "test", wh.ID)

	// logs: every change above, newest first; --key narrows it.
	var logs []struct {
		Method string `json:"method"`
		Path   string `json:"path"`
		Status int    `json:"status"`
	}
	moc.ok(&logs, "logs", "--all")
	if len(logs) != 6 || logs[0].Method != "DELETE" || logs[0].Path != "/api/v1/webhooks/"+wh.ID {
		t.Fatalf("logs: %+v", logs)
	}
	moc.ok(&logs, "logs", "--limit", "2", "--from", "2026-01-01")
	if len(logs) != 2 {
		t.Fatalf("logs --limit 2: %d", len(logs))
	}

	var usage struct {
		Days   []json.RawMessage `json:"days"`
		Totals struct {
			Requests int `json:"requests"`
		} `json:"totals"`
	}
	moc.ok(&usage, "usage", "--from", "2026-11-01", "--to", "2026-11-07")
	if len(usage.Days) != 7 {
		t.Fatalf("usage: %d days", len(usage.Days))
	}
}

// TestTables: on a terminal moc prints tables (and a progress line while
// it waits); on a pipe it prints JSON, with no escape sequence anywhere.
func TestTables(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	moc := newCLI(t, sys, token)
	pipe := moc.run("instances", "create", "--subdomain", "tables", "--wait")
	if pipe.code != 0 || strings.Contains(pipe.stdout+pipe.stderr, "\x1b") {
		t.Fatalf("on a pipe: exit %d, stdout %q, stderr %q", pipe.code, pipe.stdout, pipe.stderr)
	}
	var op operation
	pipe.JSON(t, &op)

	tty := moc.with()
	tty.tty = true
	r := tty.run("instances", "restart", op.InstanceID, "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "STATUS") || !strings.Contains(r.stdout, "instance.restart") {
		t.Fatalf("on a terminal: exit %d, stdout %q", r.code, r.stdout)
	}
	if !strings.Contains(r.stderr, "\r") || !strings.Contains(r.stderr, op.InstanceID[:0]+"instance.restart") {
		t.Errorf("no progress line on the terminal: stderr %q", r.stderr)
	}
	r = tty.run("instances", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "SUBDOMAIN") || !strings.Contains(r.stdout, "tables") {
		t.Fatalf("instances list on a terminal: %q", r.stdout)
	}
	// NO_COLOR keeps the table and drops the colour.
	r = tty.with("NO_COLOR", "1").run("instances", "list")
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("NO_COLOR: %q", r.stdout)
	}
	r = tty.run("-o", "json", "account")
	var acct map[string]any
	r.JSON(t, &acct)
}

func TestAuthLogin(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	dir := t.TempDir()
	moc := newCLI(t, sys, "").with("MOC_CONFIG_DIR", dir, "MOC_API_URL", "")

	// Not a token: refused before any call, nothing saved.
	moc.stdin = "hello\n"
	moc.fails(exitUsage, "auth", "login", "--api-url", sys.URL+"/api/v1")
	// A well-formed token the API refuses: exit 3, nothing saved.
	moc.stdin = "moc_nokey_000000000000000000000000000000000000\n"
	moc.fails(exitAPI, "auth", "login", "--api-url", sys.URL+"/api/v1")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); !os.IsNotExist(err) {
		t.Fatalf("a refused token was saved: %v", err)
	}

	moc.stdin = token + "\n"
	r := moc.ok(nil, "auth", "login", "--api-url", sys.URL+"/api/v1")
	if !strings.Contains(r.stderr, "Logged in") {
		t.Errorf("stderr %q", r.stderr)
	}
	fi, err := os.Stat(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if !strings.Contains(string(b), token) || !strings.Contains(string(b), sys.URL) {
		t.Fatalf("config %s", b)
	}
	// Later commands need neither MOC_TOKEN nor MOC_API_URL.
	moc.stdin = ""
	moc.ok(nil, "instances", "list")
	var st struct {
		Prefix string `json:"token_prefix"`
		Source string `json:"source"`
	}
	moc.ok(&st, "auth", "status")
	if !strings.HasPrefix(token, st.Prefix+"_") || strings.Contains(st.Prefix, token) {
		t.Fatalf("auth status %+v", st)
	}
	moc.ok(nil, "auth", "logout")
	moc.fails(exitUsage, "instances", "list")
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		var stdout, stderr strings.Builder
		code := run(t.Context(), []string{"completion", shell}, IO{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		if code != 0 || !strings.Contains(stdout.String(), "moc") || stdout.Len() < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, stdout.Len(), stderr.String())
		}
	}
}
