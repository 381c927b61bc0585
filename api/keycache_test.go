package api_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// clock is a test clock that moves only when told.
type clock struct {
	base   time.Time
	offset atomic.Int64
}

func newClock() *clock                   { return &clock{base: time.Now()} }
func (c *clock) now() time.Time          { return c.base.Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// replicas starts two api processes on one database and Redis, their key
// caches on clk (nil: the real clock); with hubs, each listens on its own
// notify.Hub as `mocd api` does.
func replicas(t *testing.T, clk *clock, hubs bool) (a, b *apiEnv) {
	t.Helper()
	dsn := testenv.DatabaseURL(t)
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := testenv.StartRedis(t)
	start := func() *apiEnv {
		var hub *notify.Hub
		if hubs {
			hub = notify.New(dsn, api.NotifyChannels, nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = hub.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			<-hub.Ready()
		}
		return startAPIOn(t, st, r, func(o *api.Options) {
			if clk != nil {
				o.Now = clk.now
			}
			o.Notifier = hub
		})
	}
	return start(), start()
}

// TestRevokedKeyIsRefusedEverywhereFromTheNextRequest: API.md's promise
// with every replica keeping key rows and no notification at all (no
// Notifier). Replica b has just read the keys; once replica a has answered
// the revoke or the rotation, b refuses the old tokens, and a rotated
// key's new token works on b at once.
func TestRevokedKeyIsRefusedEverywhereFromTheNextRequest(t *testing.T) {
	t.Parallel()
	a, b := replicas(t, nil, false)
	acct, admin := a.account("pro", apikey.PresetFull)
	revoked, rotated := a.key(acct, "keys:read"), a.key(acct, "keys:read")
	for _, tok := range []string{admin, revoked, rotated} {
		for _, e := range []*apiEnv{a, b} {
			if r := e.do("GET", "/api/v1/keys", tok, nil); r.Status != 200 {
				t.Fatalf("first call: %d %s", r.Status, r.Body)
			}
		}
	}

	a.revoke(admin, revoked)
	fresh := a.rotate(admin, rotated)
	for name, e := range map[string]*apiEnv{"a": a, "b": b} {
		if r := e.do("GET", "/api/v1/keys", revoked, nil); r.Status != 401 {
			t.Errorf("revoked key on %s: %d, want 401", name, r.Status)
		}
		if r := e.do("GET", "/api/v1/keys", rotated, nil); r.Status != 401 {
			t.Errorf("rotated key's old token on %s: %d, want 401", name, r.Status)
		}
		if r := e.do("GET", "/api/v1/keys", fresh, nil); r.Status != 200 {
			t.Errorf("rotated key's new token on %s: %d, want 200", name, r.Status)
		}
	}
}

// TestKeptKeyRowsLiveOutTheirAge: a change made behind the api's back
// (`mocd admin set-plan`) with no Notifier to tell it: the replica answers
// from the row it keeps (the cache is in use) until its clock has moved on
// by KeyCacheMaxAge, then reads the new plan.
func TestKeptKeyRowsLiveOutTheirAge(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a, _ := replicas(t, clk, false)
	acct, admin := a.account("pro", apikey.PresetFull)
	if r := a.do("GET", "/api/v1/keys", admin, nil); r.Status != 200 {
		t.Fatalf("first call: %d %s", r.Status, r.Body)
	}
	if err := store.SetPlan(context.Background(), a.st.DB, acct, "free"); err != nil {
		t.Fatal(err)
	}
	if r := a.do("GET", "/api/v1/keys", admin, nil); r.Status != 200 {
		t.Fatalf("right after set-plan: %d, want the kept row's 200 (is the cache off?)", r.Status)
	}
	clk.advance(api.DefaultKeyCacheMaxAge)
	if r := a.do("GET", "/api/v1/keys", admin, nil); r.Status != 403 || r.Code(t) != "plan_required" {
		t.Errorf("once the row has aged: %d %s, want 403 plan_required", r.Status, r.Body)
	}
}

// TestKeyChangesReachOtherReplicasByNotify: with their Notifiers, as
// `mocd api` runs, the replicas drop a changed key's or account's rows at
// the commit's NOTIFY: the clock never moves here, so nothing else could.
func TestKeyChangesReachOtherReplicasByNotify(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a, b := replicas(t, clk, true)
	_, admin := a.account("pro", apikey.PresetFull)
	other, otherAdmin := a.account("pro", apikey.PresetFull)
	for _, tok := range []string{admin, otherAdmin} {
		if r := b.do("GET", "/api/v1/keys", tok, nil); r.Status != 200 {
			t.Fatalf("first call on b: %d %s", r.Status, r.Body)
		}
	}
	if err := store.SetPlan(context.Background(), a.st.DB, other, "free"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "b to see the plan change", func() bool {
		return b.do("GET", "/api/v1/keys", otherAdmin, nil).Status == 403
	})
	if r := b.do("GET", "/api/v1/keys", admin, nil); r.Status != 200 {
		t.Errorf("a key of an unchanged account after another's change: %d", r.Status)
	}
}
