package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"strings"

	"github.com/lib/pq"
)

// Prepared statements, kept per connection.
//
// lib/pq sends every parameterised query as an unnamed statement, which
// Postgres parses and plans each time: measured with pgbench on this
// project's machine, an accept's statements run about 2× faster prepared
// and a poll's 3–4× (BENCHMARKS.md). database/sql's own Stmt would need a
// handle per statement threaded through every store function and every
// transaction; this wrapper instead prepares, on each connection, every
// parameterised statement the first time that connection runs it, and from
// then on sends only Bind/Execute/Sync for it: the same single round trip
// as before, minus the parse and plan. Nothing changes for callers.
//
// Statements without parameters keep lib/pq's simple-query path (it may
// hold several statements, as migrations do, which a prepared statement
// cannot). Each connection keeps at most stmtCacheSize statements and
// closes the least recently used one beyond that, so statements built at
// run time cannot grow it without bound.

// stmtCacheSize bounds the prepared statements of one connection: mocd has
// about a hundred distinct parameterised statements, the hot ones a dozen.
const stmtCacheSize = 256

// preparingConnector hands database/sql connections that keep their
// statements prepared.
type preparingConnector struct {
	driver.Connector
}

func (c preparingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	p, ok := cn.(pqConn)
	if !ok { // not lib/pq's connection: used as it is
		return cn, nil
	}
	return &preparingConn{pqConn: p, byQuery: map[string]*list.Element{}, lru: list.New()}, nil
}

// pqConn is what lib/pq's connection implements; preparingConn passes all
// of it through but QueryContext and ExecContext.
type pqConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.QueryerContext
	driver.ExecerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

// pqStmt is what lib/pq's prepared statement implements.
type pqStmt interface {
	driver.Stmt
	driver.StmtQueryContext
	driver.StmtExecContext
}

// preparingConn is one Postgres connection with its prepared statements.
// database/sql uses a connection from one goroutine at a time, so the
// cache needs no lock. Its statements go with it when it closes.
type preparingConn struct {
	pqConn
	byQuery map[string]*list.Element // of *cachedStmt
	lru     *list.List               // front: most recently used
}

type cachedStmt struct {
	query string
	stmt  pqStmt
}

// stmt returns the connection's prepared statement for query, preparing it
// (one round trip, once per connection) when it is new.
func (c *preparingConn) stmt(ctx context.Context, query string) (pqStmt, error) {
	if el, ok := c.byQuery[query]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*cachedStmt).stmt, nil
	}
	ds, err := c.pqConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(pqStmt)
	if !ok {
		ds.Close()
		return nil, errors.New("store: lib/pq statement without context methods")
	}
	c.byQuery[query] = c.lru.PushFront(&cachedStmt{query: query, stmt: st})
	if c.lru.Len() > stmtCacheSize {
		el := c.lru.Back()
		c.drop(el)
		_ = el.Value.(*cachedStmt).stmt.Close()
	}
	return st, nil
}

func (c *preparingConn) drop(el *list.Element) {
	c.lru.Remove(el)
	delete(c.byQuery, el.Value.(*cachedStmt).query)
}

// cacheable says whether query goes through a prepared statement: it has
// parameters, and it is not a COPY (which lib/pq prepares its own way).
func cacheable(query string, args []driver.NamedValue) bool {
	if len(args) == 0 {
		return false
	}
	q := strings.TrimSpace(query)
	return len(q) < 4 || !strings.EqualFold(q[:4], "COPY")
}

// dropIfStale forgets query's statement after an error that means it must
// not be used again: its plan no longer matches the schema (0A000 "cached
// plan must not change result type") or the server does not know it
// (26000). It is not closed: the server lost it, or the transaction is
// aborted and would refuse the Close.
func (c *preparingConn) dropIfStale(query string, err error) {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || (pqErr.Code != "0A000" && pqErr.Code != "26000") {
		return
	}
	if el, ok := c.byQuery[query]; ok {
		c.drop(el)
	}
}

func (c *preparingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if !cacheable(query, args) {
		return c.pqConn.QueryContext(ctx, query, args)
	}
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args)
	if err != nil {
		c.dropIfStale(query, err)
	}
	return rows, err
}

func (c *preparingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if !cacheable(query, args) {
		return c.pqConn.ExecContext(ctx, query, args)
	}
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := st.ExecContext(ctx, args)
	if err != nil {
		c.dropIfStale(query, err)
	}
	return res, err
}
