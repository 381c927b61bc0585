// Package store is mocd's system of record: Postgres through sqlx and lib/pq,
// one file per table family. Methods take a sqlx.ExtContext so that a caller
// can run several of them in one transaction (see WithTx); errors come back
// as ErrNotFound or *ConflictError, never as driver errors a caller must
// parse.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/myopenclaw/mocd/migrations"
)

// ErrNotFound is a row that does not exist, or belongs to another account:
// callers must not be able to tell the two apart.
var ErrNotFound = errors.New("not found")

// ConflictError is a unique violation; Constraint names the index.
type ConflictError struct {
	Constraint string
}

func (e *ConflictError) Error() string { return "conflict on " + e.Constraint }

// ErrConflict matches any *ConflictError with errors.Is.
var ErrConflict = errors.New("conflict")

// Is lets errors.Is(err, ErrConflict) match every ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Store wraps the database handle.
type Store struct {
	DB *sqlx.DB
	// lockSlots bounds how many instance locks (each a pooled connection
	// held for a whole operation) are held at once, to half the pool: the
	// runs that hold them need the other half for their statements, so
	// they can never take every connection and wait on each other.
	lockSlots chan struct{}
}

// DefaultMaxConns is the pool size of a process's Store.
const DefaultMaxConns = 32

// SetMaxConns sizes the pool (and with it how many instance locks may be
// held at once). Call it before the Store is used.
func (s *Store) SetMaxConns(n int) {
	s.DB.SetMaxOpenConns(n)
	s.DB.SetMaxIdleConns(n)
	s.lockSlots = make(chan struct{}, max(1, n/2))
}

// Open connects to Postgres and checks the connection. Each connection
// keeps the parameterised statements it runs prepared (stmtcache.go).
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	pc, err := pq.NewConnector(withBinaryParameters(databaseURL))
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := sqlx.NewDb(sql.OpenDB(preparingConnector{pc}), "postgres")
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres at %s: %w", Redact(databaseURL), err)
	}
	st := &Store{DB: db}
	st.SetMaxConns(DefaultMaxConns)
	return st, nil
}

// withBinaryParameters turns on lib/pq's binary_parameters unless the URL
// says otherwise: lib/pq then sends a parameterised query's Parse, Bind and
// Execute together, one round trip instead of two (measured on this
// machine: 388 µs → 233 µs for SELECT $1).
func withBinaryParameters(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return databaseURL
	}
	q := u.Query()
	if q.Get("binary_parameters") == "" {
		q.Set("binary_parameters", "yes")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Close closes the pool.
func (s *Store) Close() error { return s.DB.Close() }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.DB.PingContext(ctx) }

// Migrate applies every pending migration. A Postgres advisory lock lets
// several processes run it at once (api and worker starting together).
func Migrate(ctx context.Context, db *sql.DB) (applied int, err error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return 0, fmt.Errorf("load migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	return len(res), nil
}

// CreateDatabase creates the database named in databaseURL when it does not
// exist, connecting to the server's "postgres" database to do so. mocd dev
// uses it so that it runs with zero setup.
func CreateDatabase(ctx context.Context, databaseURL string) error {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	db, err := sql.Open("postgres", admin.String())
	if err != nil {
		return err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("connect to postgres at %s: %w", Redact(admin.String()), err)
	}
	if exists {
		return nil
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Code == "42P04" { // created meanwhile
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Redact hides the password of a connection URL, for logs and errors.
func Redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// WithTx runs fn in a transaction, committing when it returns nil.
func (s *Store) WithTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.DB.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", mapErr(err))
	}
	return nil
}

// mapErr turns driver errors into the kinds callers test for.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch {
		case pqErr.Code == "23505":
			return &ConflictError{Constraint: pqErr.Constraint}
		case pqErr.Code.Class() == "22":
			// A data exception: a value Postgres cannot hold (a NUL in
			// text, a time zone offset beyond ±15:59, a date out of range).
			// Only a caller's input reaches a statement that way.
			return fmt.Errorf("%w: %s", ErrInvalidValue, pqErr.Code.Name())
		}
	}
	return err
}

// execOne runs a statement that must affect a row: none affected is
// ErrNotFound (the row is not there, or not in the state the statement
// requires: another account's, revoked, no longer pending).
func execOne(ctx context.Context, db sqlx.ExtContext, q string, args ...any) error {
	res, err := db.ExecContext(ctx, q, args...)
	if err != nil {
		return mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// ErrInvalidValue is a value that Postgres refused to store or compare (SQL
// error class 22, data exception): bad input, never a fault of the server.
var ErrInvalidValue = errors.New("store: a value cannot be stored")
