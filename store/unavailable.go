package store

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"

	"github.com/lib/pq"
)

// Unavailable reports whether err is Postgres refusing or losing the
// connection a call needed, rather than refusing the call itself: the
// server is out of connection slots (53300 "sorry, too many clients
// already", or a role's or database's own CONNECTION LIMIT), short of
// another resource (class 53), shutting down or starting (57P01–57P03), a
// connection exception (class 08), a connection the driver found broken,
// or a dial that failed. All are transient: the same call may succeed a
// moment later, so the api answers 503 with Retry-After, never 500.
//
// It classifies the error wherever it came from (a query, a Begin, a
// Commit) instead of being a kind mapErr returns, because database/sql
// reports a refused connection from paths mapErr never sees.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if pqErr, ok := errors.AsType[*pq.Error](err); ok {
		switch pqErr.Code.Class() {
		case "08", "53":
			return true
		}
		switch pqErr.Code {
		case "57P01", "57P02", "57P03":
			return true
		}
		return false
	}
	// A refused dial (Postgres down) comes from lib/pq as the dialer's
	// error; the api dials nothing else on a request's path.
	if opErr, ok := errors.AsType[*net.OpError](err); ok && opErr.Op == "dial" {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}
