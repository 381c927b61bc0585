package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/testenv"
)

// TestAPIDebugListener: `mocd api` serves pprof on MOC_DEBUG_LISTEN only,
// never on its API address.
func TestAPIDebugListener(t *testing.T) {
	r := testenv.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	debug := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	vars := envOf(map[string]string{
		"DATABASE_URL": testenv.DatabaseURL(t), "REDIS_URL": r.URL(), "MOC_LISTEN": listen,
		"MOC_PEPPER": strings.Repeat("p", 32), "MOC_SECRET_KEY": strings.Repeat("s", 32),
		"MOC_INSECURE_HTTP": "true", "MOC_DEBUG_LISTEN": debug,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var stderr testenv.Buffer
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = run(ctx, []string{"api"}, vars, &stderr, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("mocd api exited with %v", runErr)
		}
	})
	get := func(url string) int {
		res, err := http.Get(url)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for get("http://"+debug+"/debug/pprof/cmdline") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("no pprof on MOC_DEBUG_LISTEN\nstderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := get("http://" + listen + "/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("the API address answers /debug/pprof/cmdline with %d, want 404", code)
	}
}
