package api

import (
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
)

// keyJSON is the Key object: never the secret nor its hash.
type keyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

// keyWithToken is the answer to create and rotate: the token, shown once.
type keyWithToken struct {
	keyJSON
	Token string `json:"token"`
}

func toKeyJSON(k store.Key) keyJSON {
	return keyJSON{
		ID: k.ID, Name: k.Name, Prefix: k.Prefix, Scopes: []string(k.Scopes),
		CreatedAt: k.CreatedAt.UTC(), LastUsedAt: utcPtr(k.LastUsedAt), ExpiresAt: utcPtr(k.ExpiresAt),
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) listKeys(c *gin.Context) error {
	keys, err := store.ListKeys(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID)
	if err != nil {
		return err
	}
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k))
	}
	c.JSON(http.StatusOK, out)
	return nil
}

type createKeyRequest struct {
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (s *Server) createKey(c *gin.Context) error {
	var req createKeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || utf8.RuneCountInString(req.Name) > 100 {
		return badRequest("name is required, at most 100 characters")
	}
	if len(req.Scopes) == 0 {
		return badRequest(`scopes is required: a list of scopes, or a preset such as ["read-only"], ["write"] or ["full"]`)
	}
	scopes, err := apikey.Expand(req.Scopes)
	if err != nil {
		return badRequest("%v", err)
	}
	if err := canGrant(principal(c), scopes); err != nil {
		return err
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(time.Now()) {
		return badRequest("expires_at must be in the future")
	}
	tok := apikey.Mint(apikey.NewKeyID(), s.opts.Pepper)
	k, err := store.InsertKey(c.Request.Context(), s.opts.Store.DB, store.Key{
		ID: tok.KeyID, AccountID: principal(c).AccountID, Name: req.Name, Prefix: tok.Prefix,
		SecretHash: tok.Hash, Scopes: scopes, ExpiresAt: req.ExpiresAt,
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, keyWithToken{keyJSON: toKeyJSON(k), Token: tok.Plain})
	return nil
}

// canGrant refuses to mint or rotate a key holding a scope the caller lacks.
func canGrant(p *store.Principal, scopes []string) error {
	if missing := apikey.Missing(p.Scopes, scopes); len(missing) > 0 {
		return newError(http.StatusForbidden, "insufficient_scope",
			"this API key cannot grant scopes it does not hold: %s", strings.Join(missing, ", "))
	}
	return nil
}

func (s *Server) rotateKey(c *gin.Context) error {
	ctx, p := c.Request.Context(), principal(c)
	keyID := c.Param("id")
	if !id.HasPrefix(keyID, id.Key) {
		return errNotFound
	}
	k, err := store.GetKey(ctx, s.opts.Store.DB, p.AccountID, keyID)
	if err != nil {
		return err
	}
	if err := canGrant(p, k.Scopes); err != nil {
		return err
	}
	tok := apikey.Mint(k.ID, s.opts.Pepper)
	k, err = store.RotateKey(ctx, s.opts.Store.DB, p.AccountID, k.ID, tok.Hash)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, keyWithToken{keyJSON: toKeyJSON(k), Token: tok.Plain})
	return nil
}

func (s *Server) revokeKey(c *gin.Context) error {
	keyID := c.Param("id")
	if !id.HasPrefix(keyID, id.Key) {
		return errNotFound
	}
	if err := store.RevokeKey(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, keyID); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
