package jobs

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// TypeWebhookDelivery makes one attempt of one webhook_deliveries row.
const TypeWebhookDelivery = "webhook:deliver"

// DeliveryTimeout bounds one delivery task: the 15 s HTTP timeout of an
// attempt plus the database work around it.
const DeliveryTimeout = 30 * time.Second

// DeliveryPayload names the delivery and the attempt the task makes: the
// number of attempts the delivery has made before it (0 for the first).
// Everything else is read from Postgres.
type DeliveryPayload struct {
	DeliveryID string `json:"delivery_id"`
	Attempt    int    `json:"attempt"`
}

// NewDeliveryTask makes the task of attempt number attempt (0 for the
// first) of delivery deliveryID, to run at at. Its TaskID is the delivery
// id plus the attempt number, so the relay and the first enqueue cannot
// queue one attempt twice, while a retry scheduled later gets its own task.
func NewDeliveryTask(deliveryID string, attempt int, at time.Time) (*asynq.Task, []asynq.Option) {
	b, _ := json.Marshal(DeliveryPayload{DeliveryID: deliveryID, Attempt: attempt})
	return asynq.NewTask(TypeWebhookDelivery, b), []asynq.Option{
		asynq.TaskID(DeliveryTaskID(deliveryID, attempt)),
		asynq.Queue(QueueWebhooks),
		asynq.ProcessAt(at),
		// A receiver's failure is recorded and its retry is a new task,
		// on the Standard Webhooks schedule; Asynq's retries only repeat
		// an attempt that could not be made (Postgres down, say).
		asynq.MaxRetry(deliveryMaxRetry),
		asynq.Timeout(DeliveryTimeout),
	}
}

// deliveryMaxRetry bounds Asynq's retries of one attempt that could not
// be made; after them the task is archived and the worker's relay, which
// finds the delivery still pending, queues it afresh.
const deliveryMaxRetry = 5

// DeliveryTaskID is the TaskID of attempt number attempt of a delivery.
func DeliveryTaskID(deliveryID string, attempt int) string {
	return deliveryID + "#" + strconv.Itoa(attempt)
}
