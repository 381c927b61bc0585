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
		asynq.MaxRetry(0), // retries follow the Standard Webhooks schedule, scheduled by the handler
		asynq.Timeout(DeliveryTimeout),
	}
}

// DeliveryTaskID is the TaskID of attempt number attempt of a delivery.
func DeliveryTaskID(deliveryID string, attempt int) string {
	return deliveryID + "#" + strconv.Itoa(attempt)
}
