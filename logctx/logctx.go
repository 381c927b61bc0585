// Package logctx carries request-scoped identifiers in a context.Context
// and adds them to every log record through a slog.Handler, so that no log
// line written with a request's context can forget them (STYLE.md: the
// logger reads them from the context).
//
// Today it carries the request id. Another identifier (a trace id, say)
// is added the same way: a With/From pair for the context, and one entry
// in fields, which Handler reads for every record.
package logctx

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

type ctxKey int

const requestIDKey ctxKey = iota

// WithRequestID returns ctx carrying the request id rid.
func WithRequestID(ctx context.Context, rid string) context.Context {
	return context.WithValue(ctx, requestIDKey, rid)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	rid, _ := ctx.Value(requestIDKey).(string)
	return rid
}

// fields are the attributes Handler adds to a record from its context,
// each when the context carries it.
var fields = []func(context.Context) (slog.Attr, bool){
	func(ctx context.Context) (slog.Attr, bool) {
		rid := RequestID(ctx)
		return slog.String("request_id", rid), rid != ""
	},
	// The OpenTelemetry span of ctx: a log line links to its trace.
	func(ctx context.Context) (slog.Attr, bool) {
		sc := trace.SpanContextFromContext(ctx)
		return slog.String("trace_id", sc.TraceID().String()), sc.IsValid()
	},
	func(ctx context.Context) (slog.Attr, bool) {
		sc := trace.SpanContextFromContext(ctx)
		return slog.String("span_id", sc.SpanID().String()), sc.IsValid()
	},
}

// Handler is a slog.Handler that adds the context's identifiers (fields)
// to every record before passing it on.
type Handler struct {
	inner slog.Handler
}

// NewHandler wraps h; a handler that is already a *Handler is returned as
// it is, so wrapping twice never writes an attribute twice.
func NewHandler(h slog.Handler) *Handler {
	if lh, ok := h.(*Handler); ok {
		return lh
	}
	return &Handler{inner: h}
}

// New is a logger whose records carry the context's identifiers: l's
// handler wrapped by NewHandler.
func New(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*Handler); ok {
		return l
	}
	return slog.New(NewHandler(l.Handler()))
}

// Enabled reports whether the wrapped handler handles records of level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the context's identifiers to r and passes it on. A record
// logged without a context (ctx is nil or carries nothing) gets none.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		for _, f := range fields {
			if a, ok := f(ctx); ok {
				r.AddAttrs(a)
			}
		}
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs wraps the wrapped handler's WithAttrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup wraps the wrapped handler's WithGroup; the context's
// identifiers then appear inside the group, like every attribute of the
// record.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name)}
}
