package api_test

// Tests of issue 12: each reproduces an attack made on mocd from outside,
// as it was made, and failed before its fix.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
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
		if r.Status != 403 || r.Code(t) != "insufficient_scope" || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("weak key replaying the full key's create: %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
		}
		var created struct{ Token string }
		first.JSON(t, &created)
		if bytes.Contains(r.Body, []byte(created.Token)) {
			t.Fatal("the weak key received the full key's token")
		}
	})

	t.Run("rotate", func(t *testing.T) {
		var k struct{ ID string }
		e.do("POST", "/api/v1/keys", full, `{"name":"victim","scopes":["full"]}`).JSON(t, &k)
		path := "/api/v1/keys/" + k.ID + "/rotate"
		if r := e.do("POST", path, full, nil, "Idempotency-Key", "steal-rotate"); r.Status != 201 {
			t.Fatalf("full key rotating: %d %s", r.Status, r.Body)
		}
		r := e.do("POST", path, weak, nil, "Idempotency-Key", "steal-rotate")
		if r.Status != 403 || r.Code(t) != "insufficient_scope" || r.Header.Get("Idempotent-Replayed") != "" {
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
		res[0].JSON(t, &del)
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
			if r.Status != 202 && (r.Status != 409 || r.Code(t) != "instance_deleting") {
				t.Errorf("round %d: start answered %d %s", round, r.Status, r.Body)
			}
		}
		if r := e.do("POST", "/api/v1/instances/"+instID+"/start", tok, nil); r.Status != 409 || r.Code(t) != "instance_deleting" {
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
	r = lost.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "across-rotation", "X-Request-Id", "rotation-take-over")
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "" || bytes.Equal(r.Body, orig.Body) {
		t.Fatalf("old key lost: %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
	}
	// The warning says which request took the key over: its request id,
	// once, added from the context by logctx like on every other line.
	var warned bool
	for _, line := range strings.Split(lost.logs.String(), "\n") {
		if !strings.Contains(line, "cannot be opened") {
			continue
		}
		warned = true
		if n := strings.Count(line, `"request_id":"rotation-take-over"`); n != 1 || strings.Count(line, `"request_id"`) != 1 {
			t.Errorf("take-over warning must carry its request id exactly once: %s", line)
		}
	}
	if !warned {
		t.Errorf("no take-over warning logged:\n%.3000s", lost.logs.String())
	}
	// The fresh answer is stored under the new key and replayed from now on.
	again := lost.do("POST", "/api/v1/keys", tok, body, "Idempotency-Key", "across-rotation")
	if again.Status != 201 || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("after the take-over: %d %s", again.Status, again.Body)
	}
}

// raw sends bytes on a fresh TCP connection to the api and returns what
// came back until the server closed it: the attacks on methods and headers
// were made this way, below any HTTP client's own checks.
func (e *apiEnv) raw(req string) string {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		e.t.Fatal(err)
	}
	if _, err := io.WriteString(conn, req); err != nil {
		e.t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// headerLines returns the values of every header line named name in a raw
// HTTP answer.
func headerLines(answer, name string) []string {
	head, _, _ := strings.Cut(answer, "\r\n\r\n")
	var out []string
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestMetricsLabelsComeFromFixedSets (issue 12, item 3): forty requests
// with a 200 KB method name, no token, must not grow /metrics.
func TestMetricsLabelsComeFromFixedSets(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	for i := 0; i < 40; i++ {
		method := strings.Repeat(string(rune('A'+i%26)), 200_000) + strconv.Itoa(i)
		answer := e.raw(method + " /api/v1/instances/" + strings.Repeat("x", 1000) + " HTTP/1.1\r\nHost: mocd\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(answer, "HTTP/1.1 4") {
			t.Fatalf("answer to a 200 KB method: %.200q", answer)
		}
		if len(answer) > 4096 {
			t.Fatalf("a %d-byte answer echoes the method", len(answer))
		}
	}
	r := e.do("GET", "/metrics", "", nil)
	if r.Status != 200 {
		t.Fatal(r.Status)
	}
	if len(r.Body) > 64<<10 {
		t.Fatalf("/metrics is %d bytes after 40 long methods", len(r.Body))
	}
	labels := regexp.MustCompile(`method="([^"]*)"`).FindAllStringSubmatch(string(r.Body), -1)
	if len(labels) == 0 {
		t.Fatal("no method label in /metrics")
	}
	for _, m := range labels {
		switch m[1] {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER":
		default:
			t.Fatalf("method label %.80q", m[1])
		}
	}
	if !strings.Contains(string(r.Body), `method="OTHER",route="unmatched"`) {
		t.Errorf("the long methods are not counted as OTHER on unmatched:\n%.2000s", r.Body)
	}
}

// TestAccessLogCapsThePath (issue 12, item 7): a 900,000-character path is
// not written whole to the log; the line names the route template.
func TestAccessLogCapsThePath(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	long := "/api/v1/instances/inst_" + strings.Repeat("a", 900_000)
	answer := e.raw("GET " + long + " HTTP/1.1\r\nHost: mocd\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(answer, "HTTP/1.1 401") {
		t.Fatalf("answer: %.200q", answer)
	}
	found := false
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if len(line) > 4096 {
			t.Fatalf("a %d-byte log line: %.300s", len(line), line)
		}
		if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"route":"/api/v1/instances/:id"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no access-log line names the route:\n%.3000s", e.logs.String())
	}
}

// TestOneRetryAfter (issue 12, item 8): a 429 carries exactly one
// Retry-After, read off the wire.
func TestOneRetryAfter(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro") // 120 a minute
	req := "GET /api/v1/account HTTP/1.1\r\nHost: mocd\r\nAuthorization: Bearer " + tok + "\r\nConnection: close\r\n\r\n"
	for i := 0; i < 200; i++ {
		answer := e.raw(req)
		if !strings.HasPrefix(answer, "HTTP/1.1 429") {
			continue
		}
		if v := headerLines(answer, "Retry-After"); len(v) != 1 {
			t.Fatalf("Retry-After lines: %q", v)
		}
		if _, err := strconv.Atoi(headerLines(answer, "Retry-After")[0]); err != nil {
			t.Fatalf("Retry-After is not an integer: %v", err)
		}
		return
	}
	t.Fatal("200 requests on a pro key and no 429")
}

// keyWith adds a key with scopes and an expiry to an account, straight in
// the database, and returns its id and token.
func (e *apiEnv) keyWith(accountID string, expires *time.Time, scopes ...string) (string, string) {
	e.t.Helper()
	expanded, err := apikey.Expand(scopes)
	if err != nil {
		e.t.Fatal(err)
	}
	tok := apikey.Mint(apikey.NewKeyID(), testPepper)
	if _, err := store.InsertKey(context.Background(), e.st.DB, store.Key{
		ID: tok.KeyID, AccountID: accountID, Name: "test", Prefix: tok.Prefix, SecretHash: tok.Hash,
		Scopes: expanded, ExpiresAt: expires,
	}); err != nil {
		e.t.Fatal(err)
	}
	return tok.KeyID, tok.Plain
}

// TestKeysCannotOutliveTheirLimits (issue 12, item 5).
func TestKeysCannotOutliveTheirLimits(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, full := e.account("pro", "full")
	soon := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	_, expiring := e.keyWith(acct, &soon, "full")

	t.Run("a child without expires_at expires with its parent", func(t *testing.T) {
		r := e.do("POST", "/api/v1/keys", expiring, `{"name":"child","scopes":["read-only"]}`)
		var k struct {
			ExpiresAt *time.Time `json:"expires_at"`
		}
		r.JSON(t, &k)
		if r.Status != 201 || k.ExpiresAt == nil || !k.ExpiresAt.Equal(soon) {
			t.Fatalf("%d %s, want expires_at %s", r.Status, r.Body, soon.Format(time.RFC3339))
		}
	})
	t.Run("a child may not expire later than its parent", func(t *testing.T) {
		later := soon.Add(time.Minute).Format(time.RFC3339)
		r := e.do("POST", "/api/v1/keys", expiring, `{"name":"child","scopes":["read-only"],"expires_at":"`+later+`"}`)
		if r.Status != 400 || r.Code(t) != "invalid_request" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("rotating an expired key is 409 key_expired", func(t *testing.T) {
		past := time.Now().Add(-time.Minute)
		dead, _ := e.keyWith(acct, &past, "read-only")
		r := e.do("POST", "/api/v1/keys/"+dead+"/rotate", full, nil)
		if r.Status != 409 || r.Code(t) != "key_expired" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("an expiring key cannot rotate a key that outlives it", func(t *testing.T) {
		forever, _ := e.keyWith(acct, nil, "read-only")
		r := e.do("POST", "/api/v1/keys/"+forever+"/rotate", expiring, nil)
		if r.Status != 403 || r.Code(t) != "insufficient_scope" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("revoke follows the scope rule", func(t *testing.T) {
		_, weak := e.keyWith(acct, nil, "keys:write", "keys:read")
		strong, strongTok := e.keyWith(acct, nil, "full")
		r := e.do("DELETE", "/api/v1/keys/"+strong, weak, nil)
		if r.Status != 403 || r.Code(t) != "insufficient_scope" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if r := e.do("GET", "/api/v1/account", strongTok, nil); r.Status != 200 {
			t.Fatalf("the stronger key was revoked anyway: %d", r.Status)
		}
		peer, _ := e.keyWith(acct, nil, "keys:read")
		if r := e.do("DELETE", "/api/v1/keys/"+peer, weak, nil); r.Status != 204 {
			t.Fatalf("revoking a key with fewer scopes: %d %s", r.Status, r.Body)
		}
	})
}

// TestBadInputIsA400 (issue 12, items 4 and 8): what answered 500, and a
// preset given in place of the scope list as API.md writes it.
func TestBadInputIsA400(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro", "full")
	for name, tc := range map[string]struct {
		method, path, body string
		status             int
	}{
		"NUL in a key name":       {"POST", "/api/v1/keys", `{"name":"a\u0000b","scopes":["read-only"]}`, 400},
		"expires_at +16:00":       {"POST", "/api/v1/keys", `{"name":"x","scopes":["read-only"],"expires_at":"2999-01-01T00:00:00+16:00"}`, 201},
		"expires_at +23:59":       {"POST", "/api/v1/keys", `{"name":"x","scopes":["read-only"],"expires_at":"2999-01-01T00:00:00+23:59"}`, 201},
		"expires_at -23:59":       {"POST", "/api/v1/keys", `{"name":"x","scopes":["read-only"],"expires_at":"2999-01-01T00:00:00-23:59"}`, 201},
		"usage to=0001-01-01":     {"GET", "/api/v1/usage?to=0001-01-01", "", 400},
		"usage from=0001-01-01":   {"GET", "/api/v1/usage?from=0001-01-01&to=0001-01-02", "", 400},
		"NUL in a filter":         {"GET", "/api/v1/operations?instance_id=inst_%00", "", 400},
		"NUL in the key filter":   {"GET", "/api/v1/logs?key_id=key_%00", "", -1},
		"NUL in a webhook URL":    {"POST", "/api/v1/webhooks", `{"url":"https://example.com/\u0000","events":["webhook.test"]}`, 400},
		"logs from year 0":        {"GET", "/api/v1/logs?from=0000-01-01T00:00:00Z", "", 200},
		"operations after +23:59": {"GET", "/api/v1/operations?created_after=2020-01-01T00:00:00%2B23:59", "", 200},
		"a preset as a string":    {"POST", "/api/v1/keys", `{"name":"ci","scopes":"read-only"}`, 201},
		"a preset in a list":      {"POST", "/api/v1/keys", `{"name":"ci","scopes":["write","keys:read"]}`, 201},
		"scopes of another type":  {"POST", "/api/v1/keys", `{"name":"ci","scopes":7}`, 400},
	} {
		t.Run(name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := e.do(tc.method, tc.path, tok, body)
			if r.Status != tc.status && !(tc.status == -1 && r.Status < 500) {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, tc.status)
			}
			if r.Status >= 400 && r.Code(t) == "" {
				t.Fatalf("no code: %s", r.Body)
			}
		})
	}
	var k struct{ Scopes []string }
	e.do("POST", "/api/v1/keys", tok, `{"name":"ci","scopes":"read-only"}`).JSON(t, &k)
	if want, _ := apikey.Expand([]string{"read-only"}); strings.Join(k.Scopes, ",") != strings.Join(want, ",") {
		t.Fatalf("scopes %v, want %v", k.Scopes, want)
	}
}

// TestCursorsAreSealed (issue 12, item 7): a cursor carried the global row
// sequence (and the audit log's, its time) in clear, which told a caller
// how busy other accounts were. Decoded, it must not contain them.
func TestCursorsAreSealed(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("business")
	ctx := context.Background()
	instID := id.New(id.Instance)
	if _, err := store.InsertInstance(ctx, e.st.DB, instID, acct, "seal-"+strings.ToLower(id.Random(10)), "iad", store.StatusRunning); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if r := e.do("POST", "/api/v1/instances/"+instID+"/restart", tok, nil); r.Status != 202 {
			t.Fatalf("restart: %d %s", r.Status, r.Body)
		}
	}
	var page struct {
		Data       []struct{ ID string }
		NextCursor *string `json:"next_cursor"`
	}
	for _, list := range []struct{ path, table string }{
		{"/api/v1/operations?limit=1", "operations"},
		{"/api/v1/logs?limit=1", "audit_log"},
	} {
		r := e.do("GET", list.path, tok, nil)
		r.JSON(t, &page)
		if r.Status != 200 || page.NextCursor == nil || len(page.Data) != 1 {
			t.Fatalf("%s: %d %s", list.path, r.Status, r.Body)
		}
		var row struct {
			Seq       int64     `db:"seq"`
			CreatedAt time.Time `db:"created_at"`
		}
		if err := e.st.DB.GetContext(ctx, &row, `SELECT seq, created_at FROM `+list.table+` WHERE id = $1`, page.Data[0].ID); err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(*page.NextCursor)
		if err != nil {
			t.Fatalf("%s: cursor %q: %v", list.path, *page.NextCursor, err)
		}
		for name, v := range map[string]uint64{"seq": uint64(row.Seq), "created_at": uint64(row.CreatedAt.UnixMicro())} {
			var be, le [8]byte
			binary.BigEndian.PutUint64(be[:], v)
			binary.LittleEndian.PutUint64(le[:], v)
			if bytes.Contains(raw, be[:]) || bytes.Contains(raw, le[:]) {
				t.Errorf("%s: the cursor carries the row's %s (%d) in clear: %x", list.path, name, v, raw)
			}
		}
		// Sealed, the cursor still pages, and an altered one is refused.
		if r := e.do("GET", list.path+"&cursor="+*page.NextCursor, tok, nil); r.Status != 200 {
			t.Fatalf("%s: next page: %d %s", list.path, r.Status, r.Body)
		}
		raw[len(raw)-1] ^= 1
		if r := e.do("GET", list.path+"&cursor="+base64.RawURLEncoding.EncodeToString(raw), tok, nil); r.Status != 400 || r.Code(t) != "invalid_cursor" {
			t.Fatalf("%s: altered cursor: %d %s", list.path, r.Status, r.Body)
		}
	}
}
