// Command webhook-receiver is a minimal, complete receiver of mocd webhooks,
// to copy from or to point a test endpoint at:
//
//	WEBHOOK_SECRET=whsec_... go run ./examples/webhook-receiver -listen 127.0.0.1:9000
//
// It verifies every request with webhook.Verify (401 when that fails),
// de-duplicates by webhook-id, prints each event's type and data, and answers
// 204. It keeps the ids it has seen in memory only: a real receiver records
// them where it records the effect of the event, in the same transaction.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/myopenclaw/mocd/webhook"
)

// maxBody bounds what is read before the signature is checked, so that an
// unauthenticated client cannot make the receiver buffer without limit.
const maxBody = 1 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("webhook-receiver", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("WEBHOOK_SECRET")
	if secret == "" {
		return errors.New("WEBHOOK_SECRET is not set: use the whsec_… secret returned when the endpoint was created")
	}
	// Fail at start, not at the first delivery, when the secret is mistyped.
	if _, err := webhook.Sign(secret, "check", time.Now(), nil); err != nil {
		return fmt.Errorf("WEBHOOK_SECRET: %w", err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	logger := log.New(out, "", log.LstdFlags)
	srv := &http.Server{
		Handler:           newReceiver(secret, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
	}
	logger.Printf("listening on http://%s", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// receiver handles deliveries. seen maps each webhook-id to when it was first
// received.
type receiver struct {
	secret string
	log    *log.Logger

	mu        sync.Mutex
	seen      map[string]time.Time
	lastPrune time.Time
}

func newReceiver(secret string, logger *log.Logger) *receiver {
	return &receiver{secret: secret, log: logger, seen: make(map[string]time.Time)}
}

// dedupWindow is how long an id is remembered: as long as mocd may still
// retry the delivery, that is the whole retry schedule at its longest jitter,
// plus a margin. (A Retry-After from the receiver can stretch it further.)
func dedupWindow() time.Duration {
	var total time.Duration
	for _, d := range webhook.Schedule {
		total += d
	}
	return time.Duration(float64(total)*(1+webhook.Jitter)) + time.Hour
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	// Verify the exact bytes received, before decoding anything.
	if err := webhook.Verify(rc.secret, r.Header, body); err != nil {
		rc.log.Printf("refused from %s: %v", r.RemoteAddr, err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "body is not an event", http.StatusBadRequest)
		return
	}

	id := r.Header.Get(webhook.HeaderID)
	if !rc.claim(id, time.Now()) {
		// Already handled: mocd resends when it did not see our answer in
		// time. Answer 2xx so that it stops.
		rc.log.Printf("duplicate %s (%s), ignored", id, ev.Type)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.log.Printf("%s %s at %s: %s", id, ev.Type, ev.Timestamp.Format(time.RFC3339), ev.Data)
	w.WriteHeader(http.StatusNoContent)
}

// claim records id and reports whether it was new. Checking and recording
// under one lock means two concurrent deliveries of the same id (a retry
// overtaking a slow first attempt) are handled once.
func (rc *receiver) claim(id string, now time.Time) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if now.Sub(rc.lastPrune) > time.Minute {
		for k, at := range rc.seen {
			if now.Sub(at) > dedupWindow() {
				delete(rc.seen, k)
			}
		}
		rc.lastPrune = now
	}
	if _, ok := rc.seen[id]; ok {
		return false
	}
	rc.seen[id] = now
	return true
}
