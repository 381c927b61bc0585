// Package jobs is the contract between api and worker: Asynq task type
// names, their payloads and constructors. A task type's name is stored in
// Redis with every queued task, so a name, once shipped, is never renamed.
package jobs

// Queues. Webhook deliveries have their own queue so that slow receivers
// never delay lifecycle work.
const (
	QueueLifecycle = "lifecycle"
	QueueWebhooks  = "webhooks"
)
