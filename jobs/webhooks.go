package jobs

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// TypeWebhookDelivery delivers one webhook_deliveries row.
const TypeWebhookDelivery = "webhook:deliver"

// DeliveryPayload names the delivery; everything else is read from Postgres.
type DeliveryPayload struct {
	DeliveryID string `json:"delivery_id"`
}

// NewDeliveryTask makes the task of delivery id. Its TaskID is the delivery
// id plus the attempt number, so the relay and the first enqueue cannot
// queue one attempt twice, while a retry scheduled later gets its own task.
func NewDeliveryTask(deliveryID string, attempt int, at time.Time) (*asynq.Task, []asynq.Option) {
	b, _ := json.Marshal(DeliveryPayload{DeliveryID: deliveryID})
	return asynq.NewTask(TypeWebhookDelivery, b), []asynq.Option{
		asynq.TaskID(deliveryTaskID(deliveryID, attempt)),
		asynq.Queue(QueueWebhooks),
		asynq.ProcessAt(at),
		asynq.MaxRetry(0), // retries follow the Standard Webhooks schedule, scheduled by the handler
		asynq.Timeout(30 * time.Second),
	}
}

func deliveryTaskID(deliveryID string, attempt int) string {
	return deliveryID + "#" + strconv.Itoa(attempt)
}
