package webhook

import (
	"encoding/json"
	"slices"
	"time"
)

// Event types a webhook endpoint can subscribe to. They are part of the public
// API: never rename one once shipped, receivers switch on them.
const (
	EventOperationSucceeded    = "operation.succeeded"
	EventOperationFailed       = "operation.failed"
	EventOperationCancelled    = "operation.cancelled"
	EventInstanceStatusChanged = "instance.status_changed"
	EventTest                  = "webhook.test"
)

var eventTypes = []string{
	EventOperationSucceeded,
	EventOperationFailed,
	EventOperationCancelled,
	EventInstanceStatusChanged,
	EventTest,
}

// Event is the body of every delivery. Data depends on Type and is left raw
// so that a receiver decodes only the shapes it cares about, and so that
// fields added later do not break older receivers.
type Event struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Envelope is the body of an event of type typ whose data is data,
// stamped now.
func Envelope(typ string, data any) ([]byte, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Event{Type: typ, Timestamp: time.Now().UTC(), Data: raw})
}

// ValidEvent reports whether t is one of the event types above.
func ValidEvent(t string) bool {
	return slices.Contains(eventTypes, t)
}

// EventTypes returns every event type, in a fresh slice the caller may keep,
// for error messages and documentation that list the allowed values.
func EventTypes() []string {
	return slices.Clone(eventTypes)
}
