// Package testenv gives tests real infrastructure of their own: a fresh
// Postgres database with mocd's schema, and a private redis-server on a free
// port. Tests of different packages therefore run side by side, and beside a
// `mocd dev` on the same machine, without sharing a row or a key.
//
// MOC_TEST_DATABASE_URL names the Postgres server (an admin connection,
// default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable);
// redis-server must be on PATH (scripts/services.sh installs it).
package testenv

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/migrations"
	"github.com/myopenclaw/mocd/store"
)

// DefaultAdminURL is used when MOC_TEST_DATABASE_URL is not set.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func adminURL() string {
	if u := os.Getenv("MOC_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// DatabaseURL creates a fresh database holding the current schema and
// returns its URL; the database is dropped when the test ends. Databases are
// copied from a template that is migrated once per schema version, so each
// costs one CREATE DATABASE.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate() })
	if templateErr != nil {
		t.Fatalf("testenv: schema template: %v", templateErr)
	}
	admin, err := sql.Open("postgres", adminURL())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer admin.Close()
	name := "mocd_test_" + strings.ToLower(id.Random(12))
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		_, err = admin.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
			pq.QuoteIdentifier(name), pq.QuoteIdentifier(templateName)))
		// Two CREATE DATABASE from one template at the same instant can
		// collide ("source database is being accessed"): try again.
		if err == nil || attempt == 20 || !strings.Contains(err.Error(), "being accessed") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testenv: create database (is Postgres running? try scripts/services.sh): %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("postgres", adminURL())
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)")
	})
	return withDatabase(adminURL(), name)
}

// PoolSize caps the connections of each store a test opens. Suites run
// side by side on one Postgres (max_connections is 100 by default) and a
// test needs far fewer than the 32 a mocd process may hold.
const PoolSize = 16

// LimitPool caps st's pool at PoolSize.
func LimitPool(st *store.Store) *store.Store {
	st.SetMaxConns(PoolSize)
	return st
}

// Store opens a store on a fresh database (see DatabaseURL).
func Store(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), DatabaseURL(t))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	LimitPool(st)
	t.Cleanup(func() { st.Close() })
	return st
}

func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

// ensureTemplate creates mocd_tmpl_<hash of the migrations> once per schema
// version, under an advisory lock so that parallel test binaries agree.
func ensureTemplate() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		return "", err
	}
	name := "mocd_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]
	ctx := context.Background()
	admin, err := sql.Open("postgres", adminURL())
	if err != nil {
		return "", err
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to %s (is Postgres running? try scripts/services.sh): %w", store.Redact(adminURL()), err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(4280)`); err != nil {
		return "", err
	}
	defer conn.ExecContext(ctx, `SELECT pg_advisory_unlock(4280)`)
	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// A half-built template from a killed run is not marked datistemplate.
	conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)")
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		return "", err
	}
	db, err := sql.Open("postgres", withDatabase(adminURL(), name))
	if err != nil {
		return "", err
	}
	_, merr := store.Migrate(ctx, db)
	db.Close()
	if merr != nil {
		return "", merr
	}
	if _, err := conn.ExecContext(ctx, "ALTER DATABASE "+pq.QuoteIdentifier(name)+" WITH IS_TEMPLATE true"); err != nil {
		return "", err
	}
	return name, nil
}

// errNoRedis explains the most common setup failure.
var errNoRedis = errors.New("redis-server not found on PATH (run scripts/services.sh, which installs it)")
