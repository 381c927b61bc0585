package worker

import (
	"context"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/telemetry"
)

// traced wraps a task handler in a consumer span whose parent is the trace
// the task's headers carry (jobs.Enqueue puts it there): the request that
// accepted an operation, or the operation that queued a webhook delivery.
// Its Fly calls (otelhttp in the fly client) are children of this span.
func traced(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		ctx = telemetry.Extract(ctx, t.Headers())
		id, _ := asynq.GetTaskID(ctx)
		retry, _ := asynq.GetRetryCount(ctx)
		ctx, span := telemetry.Tracer().Start(ctx, "asynq "+t.Type(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "asynq"),
				attribute.String("messaging.message.id", id), attribute.Int("mocd.task.retry", retry)))
		defer span.End()
		err := h.ProcessTask(ctx, t)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "task failed")
		}
		return err
	})
}
