package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/testenv"
)

func envOf(m map[string]string) env {
	return func(k string) string { return m[k] }
}

// TestMissingSettingStopsAtStart: a production process without its secrets
// refuses to start, with one line naming what is missing.
func TestMissingSettingStopsAtStart(t *testing.T) {
	for _, cmd := range []string{"api", "worker"} {
		err := run(context.Background(), []string{cmd}, envOf(map[string]string{}), io.Discard, io.Discard)
		if err == nil {
			t.Fatalf("mocd %s started without MOC_PEPPER", cmd)
		}
		if msg := err.Error(); !strings.Contains(msg, "MOC_PEPPER is required") || strings.Contains(msg, "\n") {
			t.Errorf("mocd %s: %q, want one line naming MOC_PEPPER", cmd, msg)
		}
	}
	err := run(context.Background(), []string{"api"}, envOf(map[string]string{
		"MOC_PEPPER": strings.Repeat("p", 32), "MOC_SECRET_KEY": strings.Repeat("s", 32), "FLYSIM_DELAY": "soon",
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "FLYSIM_DELAY") {
		t.Errorf("invalid FLYSIM_DELAY: %v", err)
	}
	if err := run(context.Background(), []string{"frobnicate"}, envOf(nil), io.Discard, io.Discard); err == nil {
		t.Error("unknown command accepted")
	}
}

// TestDevRunsTheSystem: `mocd dev` with zero configuration beyond where
// Postgres and Redis are answers /readyz with 200, and the account that
// `mocd admin create-account --json` prints can call the API.
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
	if !strings.Contains(stdout.String(), "admin create-account") {
		t.Errorf("dev does not say how to create an account:\n%s", stdout.String())
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"admin", "create-account", "--email", "dev@example.com", "--plan", "pro", "--json"}, vars, &out, io.Discard); err != nil {
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
	if err := run(context.Background(), []string{"admin", "set-plan", "--account", acct.AccountID, "--plan", "free"}, vars, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Fatalf("after set-plan free: %d, want 403", res.StatusCode)
	}
}
