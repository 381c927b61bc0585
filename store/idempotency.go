package store

import (
	"context"
	"encoding/json"
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

// ClaimIdempotencyKey claims (account, key) for a new request in one round
// trip. It returns claimed=true when the caller now owns the key: it was
// free, or its previous claim is older than staleAfter and never finished
// (the process that held it died). Otherwise it returns the existing record.
// found=false with claimed=false means a concurrent claim committed between
// the two halves of the statement: the caller simply tries again.
func ClaimIdempotencyKey(ctx context.Context, db sqlx.ExtContext, accountID, key, method, path string, fingerprint []byte, staleAfter time.Duration) (claimed, found bool, rec IdempotencyRecord, err error) {
	const q = `WITH claim AS (
			INSERT INTO idempotency_keys AS k (account_id, key, method, path, fingerprint)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (account_id, key) DO UPDATE
				SET method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint,
					locked_at = now(), created_at = now()
				WHERE k.status_code IS NULL AND k.locked_at < now() - make_interval(secs => $6)
			RETURNING true AS claimed)
		SELECT true AS claimed, '' AS method, '' AS path, ''::bytea AS fingerprint,
			NULL::integer AS status_code, NULL::jsonb AS response_headers, NULL::bytea AS response_body,
			false AS response_sealed
		FROM claim
		UNION ALL
		SELECT false, method, path, fingerprint, status_code, response_headers, response_body, response_sealed
		FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND NOT EXISTS (SELECT 1 FROM claim)`
	rows, err := db.QueryxContext(ctx, q, accountID, key, method, path, fingerprint, staleAfter.Seconds())
	if err != nil {
		return false, false, rec, mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r struct {
			Claimed bool `db:"claimed"`
			IdempotencyRecord
		}
		if err := rows.StructScan(&r); err != nil {
			return false, false, rec, err
		}
		if r.Claimed {
			return true, true, rec, nil
		}
		return false, true, r.IdempotencyRecord, nil
	}
	return false, false, rec, mapErr(rows.Err())
}

// CompleteIdempotencyKey stores the answer of the request that holds the
// claim. Handlers that change state call it inside their own transaction.
// sealed says body is encrypted by the caller.
func CompleteIdempotencyKey(ctx context.Context, db sqlx.ExtContext, accountID, key string, status int, headers json.RawMessage, body []byte, sealed bool) error {
	const q = `UPDATE idempotency_keys SET status_code = $3, response_headers = $4, response_body = $5, response_sealed = $6
		WHERE account_id = $1 AND key = $2 AND status_code IS NULL`
	// jsonb goes as text: with binary_parameters a []byte would be sent in
	// jsonb's binary format.
	_, err := db.ExecContext(ctx, q, accountID, key, status, string(headers), body, sealed)
	return mapErr(err)
}

// ReleaseIdempotencyKey forgets an unfinished claim, so that a retry of a
// request that failed with a 5xx runs afresh.
func ReleaseIdempotencyKey(ctx context.Context, db sqlx.ExtContext, accountID, key string) error {
	const q = `DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND status_code IS NULL`
	_, err := db.ExecContext(ctx, q, accountID, key)
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
