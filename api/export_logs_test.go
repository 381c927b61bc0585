package api

import "context"

// FlushKeyUses writes the collected last-used times and request counts now,
// instead of at the next tick of Run.
func (s *Server) FlushKeyUses(ctx context.Context) { s.flushKeyUses(ctx) }

// SealCursor makes the cursor that points below seq in the list named
// scope, for benchmarks that start deep in a list.
func (s *Server) SealCursor(scope string, seq int64) string { return s.sealCursor(scope, seq) }
