package api

import (
	"strings"
	"sync"
	"time"

	"github.com/myopenclaw/mocd/store"
)

// Verified keys, kept for half a second.
//
// Authentication read the key's row and its account's plan from Postgres on
// every request: half the round trips of a poll. keyCache keeps each key's
// row (never the secret, only its HMAC, as the table does) for at most
// KeyCacheMaxAge (default half a second), and the secret is still checked
// against it on every request. What API.md promises stays exact:
//
//   - A revoked key's token, and a rotated key's old one, are refused from
//     the next request on, on every api process: the revoke or rotate
//     answers only KeyCacheMaxAge after its commit (keys.go, forgetKey),
//     when every row read before the commit has expired everywhere. A
//     revocation or rotation thus takes half a second to answer.
//   - An entry is used only while now < read start + maxAge, where read
//     start is taken BEFORE the query that filled it: a change committed at
//     T is seen by every read that starts after T, so no entry shows the
//     old row past T + maxAge, on any process.
//   - A token whose secret does not match the kept row is checked again
//     against a fresh read: a rotated key's new token works at once on
//     every process.
//   - Expiry is checked on every request against the row's expires_at.
//
// A plan change (`mocd admin set-plan`, which API.md gives no timing for)
// is seen within KeyCacheMaxAge, in practice at once: every commit that
// changes a key's secret, scopes, expiry or revocation, or an account's
// plan or email, sends a NOTIFY (migration 00010) on which each api process
// drops the rows concerned, and a reconnection of its listener (when
// notifications may have been lost) drops them all. A read that started
// before such an invalidation never fills the cache after it (the
// generation check in put), so a late read cannot bring back a dropped row.
//
// Unknown key ids are never kept (what they cost stays what a wrong secret
// costs), and at most keyCacheSize rows are.

// DefaultKeyCacheMaxAge is how long a key's row may be reused, and so how
// long a revocation or rotation takes to answer.
const DefaultKeyCacheMaxAge = 500 * time.Millisecond

// keyCacheSize bounds the rows kept: far more than the keys that call one
// process within half a second.
const keyCacheSize = 100_000

type keyCache struct {
	maxAge time.Duration // <= 0: no caching
	now    func() time.Time

	mu   sync.RWMutex
	gen  uint64 // counts invalidations
	rows map[string]cachedKey
}

type cachedKey struct {
	p       store.Principal
	expires time.Time
}

func newKeyCache(maxAge time.Duration, now func() time.Time) *keyCache {
	return &keyCache{maxAge: maxAge, now: now, rows: map[string]cachedKey{}}
}

// get answers the key's row if one is kept and still fresh.
func (k *keyCache) get(keyID string) (store.Principal, bool) {
	if k.maxAge <= 0 {
		return store.Principal{}, false
	}
	k.mu.RLock()
	e, ok := k.rows[keyID]
	k.mu.RUnlock()
	if !ok || !k.now().Before(e.expires) {
		return store.Principal{}, false
	}
	return e.p, true
}

// readStart is taken before the query whose row put will keep.
type readStart struct {
	at  time.Time
	gen uint64
}

func (k *keyCache) start() readStart {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return readStart{at: k.now(), gen: k.gen}
}

// put keeps p, read by a query that started at r, unless an invalidation
// came in since.
func (k *keyCache) put(r readStart, p store.Principal) {
	if k.maxAge <= 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen != r.gen {
		return
	}
	if len(k.rows) >= keyCacheSize {
		now := k.now()
		for id, e := range k.rows {
			if !now.Before(e.expires) {
				delete(k.rows, id)
			}
		}
		if len(k.rows) >= keyCacheSize {
			clear(k.rows)
		}
	}
	k.rows[p.ID] = cachedKey{p: p, expires: r.at.Add(k.maxAge)}
}

// invalidate handles one notification: "key <id>", "account <id>", or
// anything else (the listener's "" after a reconnection) for all.
func (k *keyCache) invalidate(payload string) {
	kind, id, _ := strings.Cut(payload, " ")
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen++
	switch {
	case kind == "key" && id != "":
		delete(k.rows, id)
	case kind == "account" && id != "":
		for keyID, e := range k.rows {
			if e.p.AccountID == id {
				delete(k.rows, keyID)
			}
		}
	default:
		clear(k.rows)
	}
}
