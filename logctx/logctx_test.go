package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/myopenclaw/mocd/logctx"
)

func TestHandlerAddsTheRequestID(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		wrap int // times the handler is wrapped
		want any // request_id in the record; nil: absent
	}{
		{name: "with a request id", ctx: logctx.WithRequestID(context.Background(), "req_1"), wrap: 1, want: "req_1"},
		{name: "without one", ctx: context.Background(), wrap: 1, want: nil},
		{name: "wrapped twice, written once", ctx: logctx.WithRequestID(context.Background(), "req_2"), wrap: 2, want: "req_2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil))
			for range tt.wrap {
				log = slog.New(logctx.NewHandler(log.Handler()))
			}
			log.With(slog.String("component", "test")).InfoContext(tt.ctx, "hello")
			if n := bytes.Count(buf.Bytes(), []byte(`"request_id"`)); n > 1 {
				t.Fatalf("request_id written %d times: %s", n, buf.Bytes())
			}
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["request_id"] != tt.want || rec["component"] != "test" {
				t.Fatalf("record %v; want request_id %v", rec, tt.want)
			}
		})
	}
}

func TestNewKeepsAWrappedLogger(t *testing.T) {
	l := logctx.New(slog.New(slog.DiscardHandler))
	if logctx.New(l) != l {
		t.Fatal("New wrapped an already wrapped logger again")
	}
}
