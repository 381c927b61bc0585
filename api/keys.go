package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
)

func (s *Server) listKeys(c *gin.Context) error {
	keys, err := store.ListKeys(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, wire.List(keys, wire.NewKey))
	return nil
}

type createKeyRequest struct {
	Name      string     `json:"name"`
	Scopes    scopeList  `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// scopeList is the scopes field: a list of scopes and presets, or one
// preset given in place of the list (API.md: "scopes": "read-only").
type scopeList []string

// UnmarshalJSON accepts a JSON array of strings or a single string.
func (l *scopeList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = scopeList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return badRequest(`scopes must be a list of scopes, or a preset such as "read-only", "write" or "full"`)
	}
	*l = many
	return nil
}

// maxKeyNameRunes bounds a key's name.
const maxKeyNameRunes = 100

// validKeyName says what is wrong with a key's name: required, at most
// maxKeyNameRunes characters, no control characters (a NUL once reached
// Postgres, which refuses it, and answered 500).
func validKeyName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > maxKeyNameRunes {
		return badRequest("name is required, at most %d characters", maxKeyNameRunes)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return badRequest("name must not contain control characters (such as NUL or a newline)")
		}
	}
	return nil
}

func (s *Server) createKey(c *gin.Context) error {
	var req createKeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if err := validKeyName(req.Name); err != nil {
		return err
	}
	if len(req.Scopes) == 0 {
		return badRequest(`scopes is required: a list of scopes, or a preset such as "read-only", "write" or "full"`)
	}
	scopes, err := apikey.Expand(req.Scopes)
	if err != nil {
		return badRequest("%v", err)
	}
	p := principal(c)
	if err := canAct(p, "grant", scopes); err != nil {
		return err
	}
	expires, err := childExpiry(p, req.ExpiresAt, time.Now())
	if err != nil {
		return err
	}
	tok := apikey.Mint(apikey.NewKeyID(), s.opts.Pepper)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		k, err := store.InsertKey(ctx, tx, store.Key{
			ID: tok.KeyID, AccountID: p.AccountID, Name: req.Name, Prefix: tok.Prefix,
			SecretHash: tok.Hash, Scopes: scopes, ExpiresAt: expires,
		})
		if err != nil {
			return result{}, err
		}
		return result{status: http.StatusCreated, body: wire.KeyWithToken{Key: wire.NewKey(k), Token: tok.Plain}}, nil
	})
}

// childExpiry is the expires_at of a key that p creates (API.md: never
// later than p's own). A key that expires creates keys that expire with it
// at the latest: when the request names no expires_at, the new key gets
// p's. Times are stored in UTC: Postgres refuses offsets beyond ±15:59,
// which RFC 3339 allows up to ±23:59 (+16:00 once answered 500).
func childExpiry(p *store.Principal, asked *time.Time, now time.Time) (*time.Time, error) {
	if asked == nil {
		return p.ExpiresAt, nil
	}
	t := asked.UTC()
	if !t.After(now) {
		return nil, badRequest("expires_at must be in the future")
	}
	if t.Year() > 9999 {
		return nil, badRequest("expires_at must be before the year 10000")
	}
	if p.ExpiresAt != nil && t.After(*p.ExpiresAt) {
		return nil, badRequest("expires_at must not be later than this API key's own (%s)", p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return &t, nil
}

// canAct refuses to create, rotate or revoke a key holding a scope the
// caller lacks (API.md): a key can never act on a more powerful one.
func canAct(p *store.Principal, verb string, scopes []string) error {
	if missing := apikey.Missing(p.Scopes, scopes); len(missing) > 0 {
		return newError(http.StatusForbidden, "insufficient_scope",
			"this API key cannot %s a key holding scopes it does not hold itself: %s", verb, strings.Join(missing, ", "))
	}
	return nil
}

var errKeyExpired = newError(http.StatusConflict, "key_expired",
	"the key has expired; its token cannot be renewed: create a new key")

func (s *Server) rotateKey(c *gin.Context) error {
	p := principal(c)
	keyID := c.Param("id")
	if !id.HasPrefix(keyID, id.Key) {
		return errNotFound
	}
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		k, err := store.GetKey(ctx, tx, p.AccountID, keyID)
		if err != nil {
			return result{}, err
		}
		if err := canAct(p, "rotate", k.Scopes); err != nil {
			return result{}, err
		}
		// A new token for an expired key would be refused at once.
		if k.ExpiresAt != nil && !time.Now().Before(*k.ExpiresAt) {
			return result{}, errKeyExpired
		}
		// Nor may a rotation hand the caller a token that outlives it.
		if p.ExpiresAt != nil && (k.ExpiresAt == nil || k.ExpiresAt.After(*p.ExpiresAt)) {
			return result{}, newError(http.StatusForbidden, "insufficient_scope",
				"this API key expires at %s and cannot rotate a key that outlives it", p.ExpiresAt.UTC().Format(time.RFC3339))
		}
		tok := apikey.Mint(k.ID, s.opts.Pepper)
		if k, err = store.RotateKey(ctx, tx, p.AccountID, k.ID, tok.Hash); err != nil {
			return result{}, err
		}
		return result{status: http.StatusCreated, body: wire.KeyWithToken{Key: wire.NewKey(k), Token: tok.Plain},
			afterCommit: s.forgetKey(keyID)}, nil
	})
}

func (s *Server) revokeKey(c *gin.Context) error {
	p := principal(c)
	keyID := c.Param("id")
	if !id.HasPrefix(keyID, id.Key) {
		return errNotFound
	}
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		k, err := store.GetKey(ctx, tx, p.AccountID, keyID)
		if err != nil {
			return result{}, err
		}
		if err := canAct(p, "revoke", k.Scopes); err != nil {
			return result{}, err
		}
		if err := store.RevokeKey(ctx, tx, p.AccountID, keyID); err != nil {
			return result{}, err
		}
		return result{status: http.StatusNoContent, afterCommit: s.forgetKey(keyID)}, nil
	})
}

// forgetKey is the afterCommit of a rotation or revocation: it keeps API.md's
// promise that the old token is refused from the next request on, on every
// api process, though each keeps key rows for up to KeyCacheMaxAge
// (keycache.go). It drops the key's row here at once, then holds the answer
// for KeyCacheMaxAge: any row read before the commit has expired by then on
// every process, whether or not the commit's NOTIFY reached it.
func (s *Server) forgetKey(keyID string) func(context.Context) {
	return func(context.Context) {
		s.keys.invalidate("key " + keyID)
		if s.keys.maxAge > 0 {
			time.Sleep(s.keys.maxAge)
		}
	}
}
