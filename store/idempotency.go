package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// IdempotencyRecord is a stored Idempotency-Key: its request fingerprint and,
// once the first request finished, the answer to replay.
type IdempotencyRecord struct {
	Method      string `db:"method"`
	Path        string `db:"path"`
	Fingerprint []byte `db:"fingerprint"`
	StatusCode  *int   `db:"status_code"`
	Headers     []byte `db:"response_headers"`
	Body        []byte `db:"response_body"`
	Sealed      bool   `db:"response_sealed"`
}

// IdempotencyClaim is the outcome of ClaimIdempotencyKey.
type IdempotencyClaim struct {
	// Claimed: the caller now owns the key and runs the request.
	Claimed bool
	// Existing is the key's record when another request holds or held it;
	// nil with Claimed false means a concurrent claim committed between the
	// two halves of the statement, and the caller simply tries again.
	Existing *IdempotencyRecord
	// Clock is the database's clock as the claim read it (its
	// statement's now()), for a claim: what a change guarded by the key
	// can date its rows from before it writes them (AcceptCallOperation's
	// CreatedAt).
	Clock Clock
}

// ClaimIdempotencyKey claims (apiKeyID, key) for a new request in one round
// trip. Keys are scoped to the API key that sent them (API.md), so one key
// can never see, nor be refused because of, another key's request. The
// claim succeeds when the key is free, or when its previous claim is older
// than staleAfter and never finished (the process that held it died).
// Otherwise the existing record is returned.
func ClaimIdempotencyKey(ctx context.Context, db sqlx.ExtContext, accountID, apiKeyID, key, method, path string, fingerprint []byte, staleAfter time.Duration) (IdempotencyClaim, error) {
	// The claim commits without waiting for its WAL flush (set_config(...,
	// true) lasts until this statement's own transaction ends): see
	// README, "Behaviour worth knowing". A claim lost in a crash only lets
	// a retry run afresh, because the request it guarded has not committed
	// either: its change commits synchronously, flushing the WAL up to and
	// past the claim.
	const q = `WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
		claim AS (
			INSERT INTO idempotency_keys AS k (account_id, api_key_id, key, method, path, fingerprint)
			SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::bytea FROM async
			ON CONFLICT (api_key_id, key) DO UPDATE
				SET method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint,
					locked_at = now(), created_at = now()
				WHERE k.status_code IS NULL AND k.locked_at < now() - make_interval(secs => $7)
			RETURNING true AS claimed)
		SELECT true AS claimed, '' AS method, '' AS path, ''::bytea AS fingerprint,
			NULL::integer AS status_code, NULL::jsonb AS response_headers, NULL::bytea AS response_body,
			false AS response_sealed, now() AS db_now
		FROM claim
		UNION ALL
		SELECT false, method, path, fingerprint, status_code, response_headers, response_body, response_sealed, now()
		FROM idempotency_keys WHERE api_key_id = $2 AND key = $3 AND NOT EXISTS (SELECT 1 FROM claim)`
	// The statement yields at most one row: the claim, or the record that
	// refused it.
	var r struct {
		Claimed bool      `db:"claimed"`
		Now     time.Time `db:"db_now"`
		IdempotencyRecord
	}
	err := sqlx.GetContext(ctx, db, &r, q, accountID, apiKeyID, key, method, path, fingerprint, staleAfter.Seconds())
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return IdempotencyClaim{}, nil
	case err != nil:
		return IdempotencyClaim{}, mapErr(err)
	case r.Claimed:
		return IdempotencyClaim{Claimed: true, Clock: ClockAt(r.Now)}, nil
	}
	return IdempotencyClaim{Existing: &r.IdempotencyRecord}, nil
}

// TakeOverIdempotencyKey turns a finished record whose stored answer can no
// longer be read (sealed with a MOC_SECRET_KEY nobody holds any more) back
// into a claim owned by the caller. It succeeds only while the record still
// holds exactly that unreadable body, so of several concurrent retries one
// takes it over and the others find it in flight.
func TakeOverIdempotencyKey(ctx context.Context, db sqlx.ExtContext, apiKeyID, key string, fingerprint, unreadable []byte) (bool, error) {
	const q = `UPDATE idempotency_keys SET status_code = NULL, response_headers = NULL, response_body = NULL,
			response_sealed = false, locked_at = now(), created_at = now()
		WHERE api_key_id = $1 AND key = $2 AND fingerprint = $3 AND status_code IS NOT NULL AND response_body = $4`
	res, err := db.ExecContext(ctx, q, apiKeyID, key, fingerprint, unreadable)
	if err != nil {
		return false, mapErr(err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// IdempotentAnswer is the answer of the request that holds the claim of
// (APIKeyID, Key), to replay. Sealed says Body is encrypted by the caller.
type IdempotentAnswer struct {
	APIKeyID, Key string
	Status        int
	Headers       json.RawMessage
	Body          []byte
	Sealed        bool
}

// completeIdempotency is the statement that stores an IdempotentAnswer;
// its parameters start at $1 unless it follows others (InsertAudit).
func completeIdempotency(first int) string {
	return fmt.Sprintf(`UPDATE idempotency_keys SET status_code = $%d, response_headers = $%d, response_body = $%d, response_sealed = $%d
		WHERE api_key_id = $%d AND key = $%d AND status_code IS NULL`, first+2, first+3, first+4, first+5, first, first+1)
}

// args are an IdempotentAnswer's parameters of completeIdempotency. jsonb
// goes as text: with binary_parameters a []byte would be sent in jsonb's
// binary format.
func (a IdempotentAnswer) args() []any {
	return []any{a.APIKeyID, a.Key, a.Status, string(a.Headers), a.Body, a.Sealed}
}

// completeIdempotencyKey is completeIdempotency on its own.
var completeIdempotencyKey = completeIdempotency(1)

// CompleteIdempotencyKey stores the answer of the request that holds the
// claim, when it changed nothing (handlers that change state store it with
// their audit entry instead: InsertAudit).
func CompleteIdempotencyKey(ctx context.Context, db sqlx.ExtContext, a IdempotentAnswer) error {
	_, err := db.ExecContext(ctx, completeIdempotencyKey, a.args()...)
	return mapErr(err)
}

// ReleaseIdempotencyKey forgets an unfinished claim, so that a retry of a
// request that failed with a 5xx runs afresh.
func ReleaseIdempotencyKey(ctx context.Context, db sqlx.ExtContext, apiKeyID, key string) error {
	const q = `DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 AND status_code IS NULL`
	_, err := db.ExecContext(ctx, q, apiKeyID, key)
	return mapErr(err)
}

// PruneIdempotencyKeys deletes up to batch keys created before cutoff and
// returns how many; callers loop until it returns less than batch, so no
// statement holds many row locks for long.
func PruneIdempotencyKeys(ctx context.Context, db sqlx.ExtContext, cutoff time.Time, batch int) (int, error) {
	const q = `DELETE FROM idempotency_keys WHERE ctid IN (
		SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)`
	res, err := db.ExecContext(ctx, q, cutoff, batch)
	if err != nil {
		return 0, mapErr(err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
