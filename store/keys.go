package store

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Key is an API key row. SecretHash never leaves the server.
type Key struct {
	ID         string         `db:"id"`
	AccountID  string         `db:"account_id"`
	Name       string         `db:"name"`
	Prefix     string         `db:"prefix"`
	SecretHash []byte         `db:"secret_hash"`
	Scopes     pq.StringArray `db:"scopes"`
	CreatedAt  time.Time      `db:"created_at"`
	LastUsedAt *time.Time     `db:"last_used_at"`
	ExpiresAt  *time.Time     `db:"expires_at"`
	RevokedAt  *time.Time     `db:"revoked_at"`
}

// Principal is what authentication learns in its one round trip: the key
// and the plan of its account.
type Principal struct {
	Key
	Plan  string `db:"plan"`
	Email string `db:"email"`
}

const keyCols = `k.id, k.account_id, k.name, k.prefix, k.secret_hash, k.scopes,
	k.created_at, k.last_used_at, k.expires_at, k.revoked_at`

// InsertKey stores a new key.
func InsertKey(ctx context.Context, db sqlx.ExtContext, k Key) (Key, error) {
	const q = `INSERT INTO api_keys AS k (id, account_id, name, prefix, secret_hash, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ` + keyCols
	var out Key
	err := sqlx.GetContext(ctx, db, &out, q, k.ID, k.AccountID, k.Name, k.Prefix, k.SecretHash, k.Scopes, k.ExpiresAt)
	return out, mapErr(err)
}

// ChannelKeyChanged is the NOTIFY channel of migration 00010's triggers,
// sent when a commit changes what authentication reads: its payload is
// "key <key id>" (secret, scopes, expiry, revocation, or the row deleted)
// or "account <account id>" (plan or email).
const ChannelKeyChanged = "mocd_key_changed"

// GetPrincipal reads a live or dead key with its account's plan; the caller
// decides what revoked or expired means.
//
// An unknown key id costs the same work as a known one: the statement
// then yields a stand-in row of the same shape (a hash no secret matches,
// every scope), so the caller decodes one row and computes one HMAC either
// way, and it returns that stand-in with ErrNotFound. Refusing an unknown
// id faster than a wrong secret told an attacker which key ids exist.
func GetPrincipal(ctx context.Context, db sqlx.ExtContext, keyID string) (Principal, error) {
	const q = `SELECT ` + keyCols + `, a.plan, a.email
		FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1
		UNION ALL
		SELECT '', '', '', '', decode(repeat('00', 32), 'hex'), $2::text[],
			now(), NULL, NULL, NULL, 'free', ''
		WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)`
	var p Principal
	err := sqlx.GetContext(ctx, db, &p, q, keyID, pq.StringArray(standInScopes))
	if err == nil && p.ID == "" {
		return p, ErrNotFound
	}
	return p, mapErr(err)
}

// standInScopes fill the stand-in row of an unknown key: as many as a full
// key holds, so that decoding it costs what decoding a real key does.
var standInScopes = []string{
	"account:read", "instance:delete", "instance:read", "instance:write", "keys:read", "keys:write",
	"logs:read", "operations:read", "usage:read", "webhooks:read", "webhooks:write",
}

// ListKeys returns an account's keys that are not revoked, oldest first.
func ListKeys(ctx context.Context, db sqlx.ExtContext, accountID string) ([]Key, error) {
	const q = `SELECT ` + keyCols + ` FROM api_keys k
		WHERE k.account_id = $1 AND k.revoked_at IS NULL ORDER BY k.created_at, k.id`
	keys := []Key{}
	err := sqlx.SelectContext(ctx, db, &keys, q, accountID)
	return keys, mapErr(err)
}

// GetKey reads one live key of an account.
func GetKey(ctx context.Context, db sqlx.ExtContext, accountID, keyID string) (Key, error) {
	const q = `SELECT ` + keyCols + ` FROM api_keys k
		WHERE k.id = $1 AND k.account_id = $2 AND k.revoked_at IS NULL`
	var k Key
	err := sqlx.GetContext(ctx, db, &k, q, keyID, accountID)
	return k, mapErr(err)
}

// RotateKey replaces a live key's secret hash.
func RotateKey(ctx context.Context, db sqlx.ExtContext, accountID, keyID string, hash []byte) (Key, error) {
	const q = `UPDATE api_keys k SET secret_hash = $3
		WHERE k.id = $1 AND k.account_id = $2 AND k.revoked_at IS NULL RETURNING ` + keyCols
	var k Key
	err := sqlx.GetContext(ctx, db, &k, q, keyID, accountID, hash)
	return k, mapErr(err)
}

// RevokeKey marks a live key revoked.
func RevokeKey(ctx context.Context, db sqlx.ExtContext, accountID, keyID string) error {
	const q = `UPDATE api_keys SET revoked_at = now()
		WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL`
	return execOne(ctx, db, q, keyID, accountID)
}

// TouchKeys records last use for many keys in one statement; the api
// batches uses in memory and flushes them every few seconds, so that no
// request waits on this write.
func TouchKeys(ctx context.Context, db sqlx.ExtContext, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	// Sorted, so that two replicas flushing at once lock rows in the same
	// order and cannot deadlock.
	ids := slices.Sorted(maps.Keys(used))
	times := make([]string, 0, len(used))
	for _, k := range ids {
		times = append(times, used[k].UTC().Format(time.RFC3339Nano))
	}
	const q = `UPDATE api_keys k SET last_used_at = u.t
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, t)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.t)`
	_, err := db.ExecContext(ctx, q, pq.Array(ids), pq.Array(times))
	return mapErr(err)
}
