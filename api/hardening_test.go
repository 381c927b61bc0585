package api_test

// Tests of issue 12: each reproduces an attack made on mocd from outside,
// as it was made, and failed before its fix.

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

// TestReplayGivesNothingTheCallerCouldNotGet (issue 12, item 1): a key
// holding only keys:write and keys:read sends the Idempotency-Key and body
// of a full key's requests. It must not receive the full key's answers (a
// full key's token), and a 4xx stored for one key is not replayed to
// another: Idempotency-Keys belong to the API key that sent them.
func TestReplayGivesNothingTheCallerCouldNotGet(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, full := e.account("pro", "full")
	weak := e.key(acct, "keys:write", "keys:read")

	t.Run("create", func(t *testing.T) {
		body := `{"name":"root","scopes":["full"]}`
		first := e.do("POST", "/api/v1/keys", full, body, "Idempotency-Key", "steal-create")
		if first.Status != 201 {
			t.Fatalf("full key: %d %s", first.Status, first.Body)
		}
		r := e.do("POST", "/api/v1/keys", weak, body, "Idempotency-Key", "steal-create")
		if r.Status != 403 || r.code(t) != "insufficient_scope" || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("weak key replaying the full key's create: %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
		}
		var created struct{ Token string }
		first.json(t, &created)
		if bytes.Contains(r.Body, []byte(created.Token)) {
			t.Fatal("the weak key received the full key's token")
		}
	})

	t.Run("rotate", func(t *testing.T) {
		var k struct{ ID string }
		e.do("POST", "/api/v1/keys", full, `{"name":"victim","scopes":["full"]}`).json(t, &k)
		path := "/api/v1/keys/" + k.ID + "/rotate"
		if r := e.do("POST", path, full, nil, "Idempotency-Key", "steal-rotate"); r.Status != 201 {
			t.Fatalf("full key rotating: %d %s", r.Status, r.Body)
		}
		r := e.do("POST", path, weak, nil, "Idempotency-Key", "steal-rotate")
		if r.Status != 403 || r.code(t) != "insufficient_scope" || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("weak key replaying the full key's rotate: %d %s", r.Status, r.Body)
		}
	})

	t.Run("a stored 4xx stays with its key", func(t *testing.T) {
		bad := `{"name":"x","scopes":["nope"]}`
		if r := e.do("POST", "/api/v1/keys", full, bad, "Idempotency-Key", "stored-400"); r.Status != 400 {
			t.Fatalf("first: %d %s", r.Status, r.Body)
		}
		r := e.do("POST", "/api/v1/keys", weak, bad, "Idempotency-Key", "stored-400")
		if r.Status != 400 || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("another key got the stored 4xx: %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
		}
	})

	t.Run("one Idempotency-Key, two API keys, two requests", func(t *testing.T) {
		a := e.do("POST", "/api/v1/keys", full, `{"name":"a","scopes":["read-only"]}`, "Idempotency-Key", "same-key")
		b := e.do("POST", "/api/v1/keys", weak, `{"name":"b","scopes":["keys:read"]}`, "Idempotency-Key", "same-key")
		if a.Status != 201 || b.Status != 201 || b.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("a %d %s; b %d %s", a.Status, a.Body, b.Status, b.Body)
		}
	})
}

// TestDeleteRacingStartsNeverComesBack (issue 12, item 2): DELETE racing
// four POST …/start on a running instance, as the attack did. Once the
// delete is accepted no other call is: every start answered 202 was
// accepted before the delete, the others are 409 instance_deleting.
func TestDeleteRacingStartsNeverComesBack(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("business")
	ctx := context.Background()
	for round := 0; round < 8; round++ {
		instID := id.New(id.Instance)
		if _, err := store.InsertInstance(ctx, e.st.DB, instID, acct, "race-"+strings.ToLower(id.Random(10)), "iad", store.StatusRunning); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		res := make([]*response, 5)
		start := make(chan struct{})
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if i == 0 {
					res[i] = e.do("DELETE", "/api/v1/instances/"+instID, tok, nil)
				} else {
					res[i] = e.do("POST", "/api/v1/instances/"+instID+"/start", tok, nil)
				}
			}()
		}
		close(start)
		wg.Wait()
		if res[0].Status != 202 {
			t.Fatalf("round %d: delete %d %s", round, res[0].Status, res[0].Body)
		}
		var del struct{ ID string }
		res[0].json(t, &del)
		var ops []struct {
			ID   string `db:"id"`
			Type string `db:"type"`
		}
		if err := e.st.DB.SelectContext(ctx, &ops, `SELECT id, type FROM operations WHERE instance_id = $1 ORDER BY seq`, instID); err != nil {
			t.Fatal(err)
		}
		if len(ops) == 0 || ops[len(ops)-1].ID != del.ID {
			t.Fatalf("round %d: operations in accept order %v: something was accepted after the delete %s", round, ops, del.ID)
		}
		for _, r := range res[1:] {
			if r.Status != 202 && (r.Status != 409 || r.code(t) != "instance_deleting") {
				t.Errorf("round %d: start answered %d %s", round, r.Status, r.Body)
			}
		}
		if r := e.do("POST", "/api/v1/instances/"+instID+"/start", tok, nil); r.Status != 409 || r.code(t) != "instance_deleting" {
			t.Errorf("round %d: start after the delete was accepted: %d %s", round, r.Status, r.Body)
		}
	}
}

// TestSecretKeyRotation (issue 12, items 4 and 6): an answer stored under
// one MOC_SECRET_KEY is replayed by a server whose current key is new and
// which lists the old one as previous; a server that holds neither takes
// the key over and runs the request afresh instead of answering 500 on
// every retry for a day.
func TestSecretKeyRotation(t *testing.T) {
	t.Parallel()
	oldBox, err := webhook.NewSecretBox(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	newBox, err := webhook.NewSecretBox(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	first := startAPI(t, func(o *api.Options) { o.SecretBox = oldBox })
	_, tok := first.account("pro")
	body := `{"name":"rotating","scopes":["read-only"]}`
	orig := first.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "across-rotation")
	if orig.Status != 201 {
		t.Fatalf("first: %d %s", orig.Status, orig.Body)
	}

	rotated := startAPIOn(t, first.st, first.redis, func(o *api.Options) { o.SecretBox = newBox.WithPrevious(oldBox) })
	r := rotated.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "across-rotation")
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.Body, orig.Body) {
		t.Fatalf("with the old key as previous: %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
	}

	lost := startAPIOn(t, first.st, first.redis, func(o *api.Options) { o.SecretBox = newBox })
	r = lost.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "across-rotation")
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "" || bytes.Equal(r.Body, orig.Body) {
		t.Fatalf("old key lost: %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
	}
	// The fresh answer is stored under the new key and replayed from now on.
	again := lost.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "across-rotation")
	if again.Status != 201 || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("after the take-over: %d %s", again.Status, again.Body)
	}
}
