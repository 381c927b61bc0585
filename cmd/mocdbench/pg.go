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
// name, by application_name (each mocd process connects under its own; see
// withAppName), for CPU accounting.
func backendPIDs(ctx context.Context, db *sql.DB, name string) (map[string][]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT application_name, pid FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	pids := map[string][]int{}
	for rows.Next() {
		var app string
		var pid int
		if err := rows.Scan(&app, &pid); err != nil {
			return nil, err
		}
		pids[app] = append(pids[app], pid)
	}
	return pids, rows.Err()
}

// withAppName sets the application_name a process's Postgres sessions
// carry, so that its backends can be told from another process's.
func withAppName(dbURL, app string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

// seedOperations stores n finished restart operations for one account,
// spread over its instances, oldest first, in a single INSERT … SELECT
// generate_series: the volume the scale scenario lists. They are
// succeeded, so the worker's relay (which looks for pending and running
// ones) never touches them.
//
// A million rows through six indexes and two foreign keys take minutes on a
// busy 2-core machine; this takes well under one. On a session of its own
// it skips foreign-key checks (session_replication_role = replica: the
// rows are valid by construction), does not wait for WAL flushes, and
// drops the table's plain indexes to build them again afterwards from
// their own definitions (pg_get_indexdef), all in one transaction.
func seedOperations(ctx context.Context, dbURL, accountID string, instances []string, n int) error {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`SET synchronous_commit = off`,
		`SET session_replication_role = replica`,
		`SET maintenance_work_mem = '256MB'`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("seed operations: %s: %w", q, err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT i.relname, pg_get_indexdef(i.oid)
		FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
		WHERE x.indrelid = 'operations'::regclass
			AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`)
	if err != nil {
		return fmt.Errorf("seed operations: read indexes: %w", err)
	}
	var names, defs []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return err
		}
		names, defs = append(names, name), append(defs, def)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, name := range names {
		if _, err := tx.ExecContext(ctx, "DROP INDEX "+pq.QuoteIdentifier(name)); err != nil {
			return fmt.Errorf("seed operations: drop index %s: %w", name, err)
		}
	}
	const q = `INSERT INTO operations (id, account_id, instance_id, type, status, attempts, created_at, started_at, finished_at)
		SELECT 'op_seed' || lpad(g::text, 13, '0'), $1, ($2::text[])[1 + g % cardinality($2::text[])],
			'instance.restart', 'succeeded', 1,
			now() - make_interval(secs => ($3 - g) * 2),
			now() - make_interval(secs => ($3 - g) * 2 - 1),
			now() - make_interval(secs => ($3 - g) * 2 - 2)
		FROM generate_series(1, $3) AS g`
	if _, err := tx.ExecContext(ctx, q, accountID, pq.Array(instances), n); err != nil {
		return fmt.Errorf("seed %d operations: %w", n, err)
	}
	for _, def := range defs {
		if _, err := tx.ExecContext(ctx, def); err != nil {
			return fmt.Errorf("seed operations: %s: %w", def, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed operations: commit: %w", err)
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
