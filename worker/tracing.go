package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// traced wraps a task handler in a consumer span whose parent is the trace
// the task's headers carry (jobs.Enqueue puts it there): the request that
// accepted an operation, or the operation that queued a webhook delivery.
// Its Fly calls (otelhttp in the fly client) are children of this span.
func traced(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
		ctx = telemetry.Extract(ctx, t.Headers())
		id, _ := asynq.GetTaskID(ctx)
		retry, _ := asynq.GetRetryCount(ctx)
		ctx, span := telemetry.Tracer().Start(ctx, "asynq "+t.Type(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "asynq"),
				attribute.String("messaging.message.id", id), attribute.Int("mocd.task.retry", retry)))
		defer func() { endSpan(span, err) }()
		return h.ProcessTask(ctx, t)
	})
}

// startWokenSpan starts the span of an operation run on a wake-up (wake.go).
// A notification carries no headers, so its parent is the trace context
// the operation's row keeps: the accept of the request that created it, the
// same parent its Asynq task has. Its Fly calls and the webhook deliveries
// it queues are children of this span. It starts at began, when the run
// began: the statement that read the trace context has already run.
func startWokenSpan(ctx context.Context, op store.Operation, began time.Time) (context.Context, trace.Span) {
	ctx = telemetry.WithTraceparent(ctx, op.Traceparent)
	return telemetry.Tracer().Start(ctx, "wake "+jobs.TypeOperation, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(began),
		trace.WithAttributes(attribute.String("messaging.system", "postgresql"),
			attribute.String("messaging.destination.name", ChannelOperationCreated),
			attribute.String("mocd.operation.id", op.ID)))
}

// endSpan ends a run's span, marking it failed when err is a failure (not
// errWaiting: waiting for an earlier operation is the normal course).
func endSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, errWaiting) {
		span.RecordError(err)
		span.SetStatus(codes.Error, "task failed")
	}
	span.End()
}
