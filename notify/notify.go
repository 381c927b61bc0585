// Package notify fans Postgres NOTIFY out to many waiters in one process
// over ONE listening connection: thousands of long-polls and streams cost
// one Postgres connection per process, not one each.
//
// A subscriber is told "look again", never what changed: it re-reads its
// state from Postgres. The contract that makes this exact:
//
//  1. Subscribe, then read the state. A commit after the read sends a
//     NOTIFY that wakes the subscription.
//  2. Whenever notifications may have been lost (the listening connection
//     was down, or had not yet started listening when the subscription was
//     made), every subscription is woken, so nobody waits on a lost one.
//
// Wake-ups coalesce: a subscription holds at most one pending wake-up, so
// a burst of notifications costs its owner one re-read, and a slow
// subscriber never slows the others down.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// pingInterval is how often the idle listening connection is checked, so
// that a connection that died silently (no FIN) is replaced within about
// this long; every subscription is then woken to re-read.
const pingInterval = 30 * time.Second

// Hub holds the process's listening connection and its subscriptions.
type Hub struct {
	dsn      string
	channels []string
	log      *slog.Logger

	mu       sync.Mutex
	subs     map[topic]map[*Subscription]struct{}
	watchers map[string]map[*watcher]struct{}

	subscribers atomic.Int64
	notified    atomic.Int64
	ready       chan struct{} // closed once every channel is listened to
	readyOnce   sync.Once
}

type topic struct{ channel, key string }

// Subscription receives a wake-up on C after each matching notification
// and after every (re)connection of the listener.
type Subscription struct {
	hub *Hub
	t   topic
	c   chan struct{}
}

// New makes a hub that will LISTEN on channels once Run starts. dsn is a
// lib/pq connection string (a postgres:// URL).
func New(dsn string, channels []string, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	return &Hub{
		dsn:      withApplicationName(dsn),
		channels: append([]string(nil), channels...),
		log:      log,
		subs:     map[topic]map[*Subscription]struct{}{},
		watchers: map[string]map[*watcher]struct{}{},
		ready:    make(chan struct{}),
	}
}

// ApplicationName is the listening connection's application_name (unless
// the DSN sets one), so that pg_stat_activity shows it: one per process.
const ApplicationName = "mocd-listen"

// withApplicationName adds fallback_application_name to a URL DSN.
func withApplicationName(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return dsn
	}
	q := u.Query()
	q.Set("fallback_application_name", ApplicationName)
	u.RawQuery = q.Encode()
	return u.String()
}

// Run connects, listens and dispatches notifications until ctx ends. The
// connection is re-established by itself after any loss; Run returns only
// when ctx ends (nil) or when a LISTEN is refused by the server.
func (h *Hub) Run(ctx context.Context) error {
	l := pq.NewListener(h.dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			h.log.Warn("postgres listener disconnected; reconnecting", slog.Any("error", err))
		case pq.ListenerEventConnectionAttemptFailed:
			h.log.Warn("postgres listener cannot connect; retrying", slog.Any("error", err))
		case pq.ListenerEventReconnected:
			h.log.Info("postgres listener reconnected")
		}
	})
	defer l.Close()

	listened := make(chan error, 1)
	go func() {
		for _, ch := range h.channels {
			// Listen blocks until the server has acknowledged the LISTEN
			// (waiting for the first connection if need be).
			if err := l.Listen(ch); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
				listened <- fmt.Errorf("listen %s: %w", ch, err)
				return
			}
		}
		listened <- nil
	}()

	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-listened:
			if err != nil {
				return err
			}
			// Subscriptions made before the LISTEN took effect may have
			// missed a notification: they look again now.
			h.readyOnce.Do(func() { close(h.ready) })
			h.wakeAll()
		case n := <-l.Notify:
			if n == nil {
				// Reconnected: what was sent meanwhile is lost.
				h.wakeAll()
				continue
			}
			h.notified.Add(1)
			h.dispatch(n.Channel, n.Extra)
		case <-ping.C:
			// A failed ping makes lib/pq drop the connection and
			// reconnect; the reconnection then wakes everyone.
			go func() { _ = l.Ping() }()
		}
	}
}

// Ready is closed once the hub listens on every channel.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Subscribe starts a subscription to notifications on channel whose
// payload is key; an empty key matches every payload of the channel.
// Close it when done. Read the state AFTER subscribing (see the package
// comment).
func (h *Hub) Subscribe(channel, key string) *Subscription {
	s := &Subscription{hub: h, t: topic{channel, key}, c: make(chan struct{}, 1)}
	h.mu.Lock()
	m := h.subs[s.t]
	if m == nil {
		m = map[*Subscription]struct{}{}
		h.subs[s.t] = m
	}
	m[s] = struct{}{}
	h.mu.Unlock()
	h.subscribers.Add(1)
	return s
}

// C receives a wake-up: look again.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	m := h.subs[s.t]
	if _, ok := m[s]; ok {
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, s.t)
		}
		h.subscribers.Add(-1)
	}
	h.mu.Unlock()
}

// Stats are the hub's counters, for metrics and benchmarks.
type Stats struct {
	Subscribers   int64 // open subscriptions
	Notifications int64 // notifications received since start
}

// Stats reads the counters.
func (h *Hub) Stats() Stats {
	return Stats{Subscribers: h.subscribers.Load(), Notifications: h.notified.Load()}
}

func (h *Hub) dispatch(channel, payload string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[channel] {
		w.fn(payload)
	}
	for s := range h.subs[topic{channel, payload}] {
		s.wake()
	}
	if payload != "" {
		for s := range h.subs[topic{channel, ""}] {
			s.wake()
		}
	}
}

func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ws := range h.watchers {
		for w := range ws {
			w.fn("")
		}
	}
	for _, m := range h.subs {
		for s := range m {
			s.wake()
		}
	}
}

// wake leaves one pending wake-up, never blocking: one is enough, since a
// woken subscriber re-reads everything it cares about.
func (s *Subscription) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

type watcher struct{ fn func(payload string) }

// Watch calls fn with the payload of every notification on channel, for a
// consumer that acts on what the payload names (the worker starts the
// operation whose id it carries) rather than re-reading a state. fn runs
// on the hub's goroutine and must return at once. It is also called with ""
// after every (re)connection: notifications may have been lost, and the
// watcher must not rely on having heard each one. stop ends the watch.
func (h *Hub) Watch(channel string, fn func(payload string)) (stop func()) {
	w := &watcher{fn: fn}
	h.mu.Lock()
	m := h.watchers[channel]
	if m == nil {
		m = map[*watcher]struct{}{}
		h.watchers[channel] = m
	}
	m[w] = struct{}{}
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.watchers[channel], w)
		h.mu.Unlock()
	}
}
