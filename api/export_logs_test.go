package api

import (
	"context"
	"time"

	"github.com/myopenclaw/mocd/store"
)

// FlushKeyUses writes the collected last-used times and request counts now,
// instead of at the next tick of Run.
func (s *Server) FlushKeyUses(ctx context.Context) { s.flushKeyUses(ctx) }

// SealCursor makes the cursor that points below seq in the list named
// scope, for benchmarks that start deep in a list.
func (s *Server) SealCursor(scope string, seq int64) string { return s.sealCursor(scope, seq) }

// SealLogCursor makes the audit log's cursor that points below the entry
// (createdAt, seq) in the list named scope.
func (s *Server) SealLogCursor(scope string, createdAt time.Time, seq int64) string {
	return s.sealLogCursor(scope, store.AuditPosition{CreatedAt: createdAt, Seq: seq})
}
