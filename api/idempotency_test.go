package api_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/webhook"
)

func countKeys(t *testing.T, e *apiEnv, tok string) int {
	t.Helper()
	var keys []struct{ ID string }
	e.do("GET", "/api/v1/keys", tok, nil).JSON(t, &keys)
	return len(keys)
}

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro")
	body := map[string]any{"name": "deploy", "scopes": []string{"read-only"}}
	first := e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "sha-3f2a9c")
	second := e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "sha-3f2a9c")
	if first.Status != 201 || second.Status != 201 {
		t.Fatalf("statuses %d, %d", first.Status, second.Status)
	}
	if !bytes.Equal(first.Body, second.Body) {
		t.Fatalf("replay differs:\n%s\n%s", first.Body, second.Body)
	}
	if first.Header.Get("Idempotent-Replayed") != "" || second.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("Idempotent-Replayed: first %q, second %q", first.Header.Get("Idempotent-Replayed"), second.Header.Get("Idempotent-Replayed"))
	}
	if n := countKeys(t, e, tok); n != 2 {
		t.Fatalf("%d keys, want 2 (the admin key and one created)", n)
	}
	// The quoted structured-field form names the same key.
	third := e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", `"sha-3f2a9c"`)
	if third.Status != 201 || !bytes.Equal(third.Body, first.Body) {
		t.Fatalf("sf-string form: %d %s", third.Status, third.Body)
	}
	// Same key, other body, path or method: 422.
	for _, r := range []*response{
		e.do("POST", "/api/v1/keys", tok, map[string]any{"name": "other", "scopes": []string{"full"}}, "Idempotency-Key", "sha-3f2a9c"),
		e.do("DELETE", "/api/v1/keys/key_0000000000000000", tok, nil, "Idempotency-Key", "sha-3f2a9c"),
	} {
		if r.Status != 422 || r.Code(t) != "idempotency_key_reused" {
			t.Errorf("reuse: %d %s", r.Status, r.Body)
		}
	}
}

func TestIdempotencyKeyValidation(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro")
	long := string(bytes.Repeat([]byte("k"), 256))
	for name, key := range map[string]string{"empty": `""`, "too long": long, "non-ASCII": "clé", "bad escape": `"a\qb"`} {
		r := e.do("POST", "/api/v1/keys", tok, map[string]any{"name": "x", "scopes": []string{"full"}}, "Idempotency-Key", key)
		if r.Status != 400 || r.Code(t) != "invalid_idempotency_key" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if n := countKeys(t, e, tok); n != 1 {
		t.Errorf("invalid keys created %d keys", n-1)
	}
}

// TestIdempotencyConcurrent: fifty simultaneous requests with one key
// create one key; every answer is the replay or 409 in use.
func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("business")
	body := map[string]any{"name": "race", "scopes": []string{"read-only"}}
	var wg sync.WaitGroup
	res := make([]*response, 50)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "one-key")
		}()
	}
	wg.Wait()
	var created []byte
	for _, r := range res {
		switch {
		case r.Status == 201:
			if created == nil {
				created = r.Body
			} else if !bytes.Equal(created, r.Body) {
				t.Errorf("two different 201 bodies:\n%s\n%s", created, r.Body)
			}
		case r.Status == 409 && r.Code(t) == "idempotency_key_in_use":
		default:
			t.Errorf("unexpected answer %d %s", r.Status, r.Body)
		}
	}
	if n := countKeys(t, e, tok); n != 2 {
		t.Fatalf("%d keys created, want 1", n-1)
	}
}

// TestIdempotencyIsPerAccount: the same key in two accounts is two requests.
func TestIdempotencyIsPerAccount(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, a := e.account("pro")
	_, b := e.account("pro")
	body := map[string]any{"name": "x", "scopes": []string{"read-only"}}
	ra := e.do("POST", "/api/v1/keys", a, body, "Idempotency-Key", "shared")
	rb := e.do("POST", "/api/v1/keys", b, body, "Idempotency-Key", "shared")
	if ra.Status != 201 || rb.Status != 201 || rb.Header.Get("Idempotent-Replayed") != "" || bytes.Equal(ra.Body, rb.Body) {
		t.Fatalf("a: %d %s\nb: %d %s", ra.Status, ra.Body, rb.Status, rb.Body)
	}
}

// TestIdempotency4xxIsStored: a 4xx answer is replayed, not re-run.
func TestIdempotency4xxIsStored(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro")
	bad := `{"name":"x","scopes":["instance:fly"]}`
	first := e.do("POST", "/api/v1/keys", tok, bad, "Idempotency-Key", "k4")
	again := e.do("POST", "/api/v1/keys", tok, bad, "Idempotency-Key", "k4")
	if first.Status != 400 || again.Status != 400 || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Body, again.Body) {
		t.Fatalf("first %d %s; again %d %s (%q)", first.Status, first.Body, again.Status, again.Body, again.Header.Get("Idempotent-Replayed"))
	}
}

// TestIdempotencyStaleClaimIsTakenOver: a claim left by a process that died
// mid-request blocks its key only until the lock timeout.
func TestIdempotencyStaleClaimIsTakenOver(t *testing.T) {
	t.Parallel()
	e := startAPI(t, func(o *api.Options) { o.IdempotencyLockTimeout = time.Second })
	acct, tok := e.account("pro")
	body := `{"name":"x","scopes":["read-only"]}`
	// What a killed process leaves behind: a claim with no answer.
	ctx := context.Background()
	fp := requestFingerprint("POST", "/api/v1/keys", body)
	cl, err := store.ClaimIdempotencyKey(ctx, e.st.DB, acct, keyIDOf(t, tok), "orphan", "POST", "/api/v1/keys", fp, time.Second)
	if err != nil || !cl.Claimed {
		t.Fatalf("claim: %+v %v", cl, err)
	}
	if r := e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "orphan"); r.Status != 409 || r.Code(t) != "idempotency_key_in_use" {
		t.Fatalf("while claimed: %d %s", r.Status, r.Body)
	}
	testenv.Eventually(t, "the stale claim to be taken over", func() bool {
		return e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "orphan").Status == 201
	})
}

func TestPruneIdempotencyKeys(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro")
	for _, k := range []string{"old-1", "old-2", "new"} {
		if r := e.do("POST", "/api/v1/keys", tok, map[string]any{"name": k, "scopes": []string{"read-only"}}, "Idempotency-Key", k); r.Status != 201 {
			t.Fatal(r.Status)
		}
	}
	ctx := context.Background()
	if _, err := e.st.DB.ExecContext(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key LIKE 'old-%'`); err != nil {
		t.Fatal(err)
	}
	total := 0
	for {
		n, err := store.PruneIdempotencyKeys(ctx, e.st.DB, time.Now().Add(-24*time.Hour), 1)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < 1 {
			break
		}
	}
	var left []string
	if err := e.st.DB.SelectContext(ctx, &left, `SELECT key FROM idempotency_keys`); err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(left) != 1 || left[0] != "new" {
		t.Fatalf("pruned %d, left %v", total, left)
	}
}

// keyIDOf is the key id ("key_…") of a token.
func keyIDOf(t testing.TB, tok string) string {
	t.Helper()
	kid, _, err := apikey.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func requestFingerprint(method, uri, body string) []byte {
	return api.Fingerprint(method, uri, []byte(body))
}

// TestStoredAnswersAreSealed: an answer shown once (a new key's token) is
// replayed to the retry but does not rest in clear in the database.
func TestStoredAnswersAreSealed(t *testing.T) {
	t.Parallel()
	box, err := webhook.NewSecretBox(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e := startAPI(t, func(o *api.Options) { o.SecretBox = box })
	_, tok := e.account("pro")
	body := map[string]any{"name": "sealed", "scopes": []string{"read-only"}}
	first := e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "seal-me")
	again := e.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "seal-me")
	var created struct{ Token string }
	first.JSON(t, &created)
	if again.Status != 201 || !bytes.Equal(first.Body, again.Body) || created.Token == "" {
		t.Fatalf("replay: %d %s", again.Status, again.Body)
	}
	var stored []byte
	if err := e.st.DB.GetContext(context.Background(), &stored, `SELECT response_body FROM idempotency_keys WHERE key = 'seal-me'`); err != nil {
		t.Fatal(err)
	}
	if len(stored) == 0 || bytes.Contains(stored, []byte(created.Token)) || bytes.Contains(stored, []byte(`"token"`)) {
		t.Fatalf("stored answer is not sealed: %q", stored)
	}
}
