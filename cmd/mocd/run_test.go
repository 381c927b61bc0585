package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/testenv"
)

func envOf(m map[string]string) env {
	return func(k string) string { return m[k] }
}

// TestMissingSettingStopsAtStart: each command without a setting it needs
// refuses to start, with one line naming what to set; nothing it does not
// need is asked for.
func TestMissingSettingStopsAtStart(t *testing.T) {
	secrets := map[string]string{"MOC_PEPPER": strings.Repeat("p", 32), "MOC_SECRET_KEY": strings.Repeat("s", 32)}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range secrets {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // each in the one-line error
		notWant []string
	}{
		{name: "api needs the pepper and the secret key", args: []string{"api"}, env: map[string]string{},
			want: []string{"MOC_PEPPER is required", "MOC_SECRET_KEY is required"}},
		{name: "worker needs the secret key and a Fly token, not the pepper", args: []string{"worker"}, env: map[string]string{},
			want: []string{"MOC_SECRET_KEY is required", "FLY_API_TOKEN is required"}, notWant: []string{"MOC_PEPPER"}},
		{name: "admin outside dev refuses to run without MOC_PEPPER", args: []string{"admin", "create-account", "--email", "a@example.com", "--plan", "pro"},
			env: map[string]string{}, want: []string{"MOC_PEPPER is required", "mocd dev admin"}, notWant: []string{"MOC_SECRET_KEY"}},
		{name: "dev pointed at another Fly API without a token", args: []string{"dev"}, env: map[string]string{"FLY_API_BASE_URL": "http://127.0.0.1:9"},
			want: []string{"FLY_API_TOKEN is required", "FLY_API_BASE_URL (http://127.0.0.1:9)", "unset FLY_API_BASE_URL"}},
		{name: "migrate reports a bad setting instead of discarding it", args: []string{"migrate"}, env: map[string]string{"MOC_RETENTION": "forever"},
			want: []string{"MOC_RETENTION"}, notWant: []string{"MOC_PEPPER"}},
		{name: "a bad value stops the api", args: []string{"api"}, env: with(map[string]string{"FLYSIM_DELAY": "soon"}),
			want: []string{"FLYSIM_DELAY"}},
		{name: "a pepper too short is refused where it is set", args: []string{"worker"}, env: with(map[string]string{"MOC_PEPPER": "short", "FLY_API_TOKEN": "x"}),
			want: []string{"MOC_PEPPER: at least 16 characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, envOf(tt.env), io.Discard, io.Discard)
			if err == nil {
				t.Fatalf("mocd %s started", strings.Join(tt.args, " "))
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("error %q asks for %q, which this command does not need", msg, w)
				}
			}
		})
	}
	if err := run(context.Background(), []string{"frobnicate"}, envOf(nil), io.Discard, io.Discard); err == nil {
		t.Error("unknown command accepted")
	}
}

// TestMigrateNeedsOnlyTheDatabase: mocd migrate runs with DATABASE_URL
// alone, no pepper and no secret key, and no mode faked to get there.
func TestMigrateNeedsOnlyTheDatabase(t *testing.T) {
	var stderr testenv.Buffer
	if err := run(context.Background(), []string{"migrate"}, envOf(map[string]string{"DATABASE_URL": testenv.DatabaseURL(t)}), io.Discard, &stderr); err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"migrations applied"`) {
		t.Errorf("migrate did not log JSON (production logging): %s", stderr.String())
	}
}

// TestDevRunsTheSystem: `mocd dev` with zero configuration beyond where
// Postgres and Redis are answers /readyz with 200, and the account that
// `mocd dev admin create-account --json` prints can call the API.
func TestDevRunsTheSystem(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	r := testenv.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	vars := envOf(map[string]string{
		"DATABASE_URL":  dbURL,
		"REDIS_URL":     r.URL(),
		"MOC_LISTEN":    listen,
		"FLYSIM_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"FLYSIM_DELAY":  "0s",
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var stdout, stderr testenv.Buffer
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = run(ctx, []string{"dev"}, vars, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("mocd dev exited with %v", runErr)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + listen + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200 (last error %v)\nstderr:\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), "mocd dev admin create-account") {
		t.Errorf("dev does not say how to create an account:\n%s", stdout.String())
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"dev", "admin", "create-account", "--email", "dev@example.com", "--plan", "pro", "--json"}, vars, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var acct struct {
		AccountID string `json:"account_id"`
		Token     string `json:"token"`
	}
	if err := json.Unmarshal(out.Bytes(), &acct); err != nil || !strings.HasPrefix(acct.AccountID, "acct_") || !strings.HasPrefix(acct.Token, "moc_") {
		t.Fatalf("create-account printed %q (%v)", out.String(), err)
	}
	req, _ := http.NewRequest("GET", "http://"+listen+"/api/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+acct.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /api/v1/keys with the admin token: %d", res.StatusCode)
	}
	if err := run(context.Background(), []string{"dev", "admin", "set-plan", "--account", acct.AccountID, "--plan", "free"}, vars, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	// The api drops the key's kept row at set-plan's NOTIFY, and uses it
	// no longer than a second anyway (API.md, Authentication).
	testenv.Eventually(t, "403 after set-plan free", func() bool {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode == 403
	})
}

// TestGOGC: mocd collects at defaultGOGC unless GOGC is set, whose value
// the runtime applied before main ran and tuneGC leaves alone.
func TestGOGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	tuneGC(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != defaultGOGC {
		t.Errorf("GOGC unset: the collector's target is %d, want %d", got, defaultGOGC)
	}
	tuneGC(func(k string) string { return map[string]string{"GOGC": "50"}[k] })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: tuneGC moved the target to %d", got)
	}
}
