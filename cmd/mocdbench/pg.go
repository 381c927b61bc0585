package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/id"
)

// defaultAdminURL is the local trust-auth server scripts/services.sh sets up.
const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// adminURL names the Postgres server: MOC_BENCH_DATABASE_URL, else the
// tests' MOC_TEST_DATABASE_URL, else the local default.
func adminURL() string {
	for _, k := range []string{"MOC_BENCH_DATABASE_URL", "MOC_TEST_DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return defaultAdminURL
}

// withDatabase returns rawURL naming database name instead.
func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// createDatabase makes a fresh, empty database and returns its URL and a
// function that drops it.
func createDatabase(ctx context.Context, prefix string) (string, func(), error) {
	admin, err := sql.Open("postgres", adminURL())
	if err != nil {
		return "", nil, err
	}
	defer admin.Close()
	name := prefix + strings.ToLower(id.Random(8))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		return "", nil, fmt.Errorf("create database %s (is Postgres running? try scripts/services.sh): %w", name, err)
	}
	dbURL, err := withDatabase(adminURL(), name)
	if err != nil {
		return "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("postgres", adminURL())
		if err != nil {
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "mocdbench: drop database %s: %v\n", name, err)
		}
	}
	return dbURL, drop, nil
}

// databaseName is the database a URL names.
func databaseName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// backendPIDs lists the server processes serving connections to database
// name, for CPU accounting.
func backendPIDs(ctx context.Context, db *sql.DB, name string) ([]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, rows.Err()
}

// seedOperations stores n finished restart operations for one account,
// spread over its instances, oldest first, in a single INSERT … SELECT
// generate_series: the volume the scale scenario lists. They are
// succeeded, so the worker's relay (which looks for pending and running
// ones) never touches them.
func seedOperations(ctx context.Context, db *sql.DB, accountID string, instances []string, n int) error {
	const q = `INSERT INTO operations (id, account_id, instance_id, type, status, attempts, created_at, started_at, finished_at)
		SELECT 'op_seed' || lpad(g::text, 13, '0'), $1, ($2::text[])[1 + g % cardinality($2::text[])],
			'instance.restart', 'succeeded', 1,
			now() - make_interval(secs => ($3 - g) * 2),
			now() - make_interval(secs => ($3 - g) * 2 - 1),
			now() - make_interval(secs => ($3 - g) * 2 - 2)
		FROM generate_series(1, $3) AS g`
	if _, err := db.ExecContext(ctx, q, accountID, pq.Array(instances), n); err != nil {
		return fmt.Errorf("seed %d operations: %w", n, err)
	}
	if _, err := db.ExecContext(ctx, `ANALYZE operations`); err != nil {
		return fmt.Errorf("analyze operations: %w", err)
	}
	return nil
}

// insertInstances stores settled, machine-less instances directly (the
// reconciler skips instances without a machine), for data that no
// scenario restarts.
func insertInstances(ctx context.Context, db *sql.DB, accountID, subdomainPrefix string, n int) ([]string, error) {
	var ids []string
	for i := range n {
		instID := id.New(id.Instance)
		_, err := db.ExecContext(ctx, `INSERT INTO instances (id, account_id, subdomain, status, fly_region)
			VALUES ($1, $2, $3, 'stopped', 'iad')`, instID, accountID, fmt.Sprintf("%s-%d", subdomainPrefix, i))
		if err != nil {
			return nil, fmt.Errorf("insert instance: %w", err)
		}
		ids = append(ids, instID)
	}
	return ids, nil
}
