package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
)

// Secret rules (API.md, Secrets).
const (
	// MaxSecretValueBytes bounds one value: 32 KiB.
	MaxSecretValueBytes = 32 << 10
)

// secretNameRe is the name rule of API.md: an environment variable name.
var secretNameRe = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,63}$`)

// ReservedSecretPrefixes are name prefixes a secret may not take: the
// platform's own variables (Fly's runtime sets FLY_*, mocd its MOC_* and
// MOCD_*), which a customer's value must never shadow.
var ReservedSecretPrefixes = []string{"FLY_", "MOC_", "MOCD_"}

// ReservedSecretNames are whole names a secret may not take: variables the
// machine's runtime depends on.
var ReservedSecretNames = []string{"HOME", "PATH", "PORT", "PRIMARY_REGION", "HOSTNAME"}

// validSecretName says what is wrong with a secret name.
func validSecretName(name string) error {
	if !secretNameRe.MatchString(name) {
		return badRequest("secret name %q must match ^[A-Z_][A-Z0-9_]{0,63}$", name)
	}
	for _, p := range ReservedSecretPrefixes {
		if strings.HasPrefix(name, p) {
			return badRequest("secret names starting with %s are reserved", p)
		}
	}
	for _, n := range ReservedSecretNames {
		if name == n {
			return badRequest("secret name %s is reserved", n)
		}
	}
	return nil
}

var errSecretLimit = newError(http.StatusForbidden, "secret_limit_reached",
	"an instance may have at most %d secrets; delete one first", store.MaxSecretsPerInstance)

// secretJSON is a secret on the wire: never its value.
type secretJSON struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	UpdatedAt time.Time `json:"updated_at"`
}

// secretDigest is a keyed digest of a value: it tells a client whether a
// value changed (compare with the digest after a PUT) without revealing
// it, and, being keyed by the server's pepper and bound to the account, it
// cannot be tested against guesses by anyone holding only a database dump
// or another account's digests.
func (s *Server) secretDigest(accountID, value string) string {
	m := hmac.New(sha256.New, s.secretDigestKey)
	m.Write([]byte(accountID))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func (s *Server) listSecrets(c *gin.Context) error {
	instID := c.Param("id")
	if !id.HasPrefix(instID, id.Instance) {
		return errNotFound
	}
	ctx := c.Request.Context()
	if _, err := store.GetInstance(ctx, s.opts.Store.DB, principal(c).AccountID, instID); err != nil {
		return err
	}
	rows, err := store.ListSecrets(ctx, s.opts.Store.DB, instID)
	if err != nil {
		return err
	}
	out := make([]secretJSON, 0, len(rows))
	for _, r := range rows {
		out = append(out, secretJSON{Name: r.Name, Digest: r.Digest, UpdatedAt: r.UpdatedAt.UTC()})
	}
	c.JSON(http.StatusOK, out)
	return nil
}

type putSecretRequest struct {
	Value *string `json:"value"`
}

// putSecret stores a secret sealed and accepts the instance.configure
// operation that puts it into the machine's environment.
func (s *Server) putSecret(c *gin.Context) error {
	instID, name := c.Param("id"), c.Param("name")
	if !id.HasPrefix(instID, id.Instance) {
		return errNotFound
	}
	if err := validSecretName(name); err != nil {
		return err
	}
	var req putSecretRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Value == nil {
		return badRequest("value is required")
	}
	if len(*req.Value) > MaxSecretValueBytes {
		return badRequest("value is %d bytes; at most %d are allowed", len(*req.Value), MaxSecretValueBytes)
	}
	if s.opts.SecretBox == nil {
		return newError(http.StatusServiceUnavailable, "secrets_unavailable", "this server has no MOC_SECRET_KEY to seal secrets with")
	}
	sealed, err := s.opts.SecretBox.Seal(*req.Value)
	if err != nil {
		return err
	}
	p := principal(c)
	digest := s.secretDigest(p.AccountID, *req.Value)
	return s.configure(c, instID, func(ctx context.Context, tx *sqlx.Tx) error {
		full, err := store.PutSecret(ctx, tx, instID, name, sealed, digest)
		if err != nil {
			return err
		}
		if full {
			return errSecretLimit
		}
		return nil
	})
}

// deleteSecret removes a secret and accepts the instance.configure
// operation that takes it out of the machine's environment.
func (s *Server) deleteSecret(c *gin.Context) error {
	instID, name := c.Param("id"), c.Param("name")
	if !id.HasPrefix(instID, id.Instance) {
		return errNotFound
	}
	if !secretNameRe.MatchString(name) {
		return errNotFound
	}
	return s.configure(c, instID, func(ctx context.Context, tx *sqlx.Tx) error {
		return store.DeleteSecret(ctx, tx, instID, name)
	})
}

// configure runs change in the transaction that locks the instance and
// queues an instance.configure behind its earlier operations. The
// instance's status does not change: the worker restarts a running
// machine on its new environment and leaves a stopped one stopped.
func (s *Server) configure(c *gin.Context, instID string, change func(ctx context.Context, tx *sqlx.Tx) error) error {
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		inst, err := lockLiveInstance(ctx, tx, p.AccountID, instID)
		if err != nil {
			return result{}, err
		}
		// Refuses with ErrInstanceDeleting (409) before anything changes.
		op, err := store.InsertCallOperation(ctx, tx, id.New(id.Operation), p.AccountID, inst, store.OpConfigure, "")
		if err != nil {
			return result{}, err
		}
		if err := change(ctx, tx); err != nil {
			return result{}, err
		}
		return s.accepted(op), nil
	})
}
