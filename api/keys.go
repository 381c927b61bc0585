package api

import (
	"context"
	"net/http"
	"strings"
	"time"
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
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		k, err := store.InsertKey(ctx, tx, store.Key{
			ID: tok.KeyID, AccountID: principal(c).AccountID, Name: req.Name, Prefix: tok.Prefix,
			SecretHash: tok.Hash, Scopes: scopes, ExpiresAt: req.ExpiresAt,
		})
		if err != nil {
			return result{}, err
		}
		return result{status: http.StatusCreated, body: wire.KeyWithToken{Key: wire.NewKey(k), Token: tok.Plain}}, nil
	})
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
		if err := canGrant(p, k.Scopes); err != nil {
			return result{}, err
		}
		tok := apikey.Mint(k.ID, s.opts.Pepper)
		if k, err = store.RotateKey(ctx, tx, p.AccountID, k.ID, tok.Hash); err != nil {
			return result{}, err
		}
		return result{status: http.StatusCreated, body: wire.KeyWithToken{Key: wire.NewKey(k), Token: tok.Plain}}, nil
	})
}

func (s *Server) revokeKey(c *gin.Context) error {
	keyID := c.Param("id")
	if !id.HasPrefix(keyID, id.Key) {
		return errNotFound
	}
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		if err := store.RevokeKey(ctx, tx, principal(c).AccountID, keyID); err != nil {
			return result{}, err
		}
		return result{status: http.StatusNoContent}, nil
	})
}
