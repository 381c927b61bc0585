package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

// MaxWebhookEndpoints is how many endpoints one account may have. One
// endpoint can subscribe to every event; the limit bounds the fan-out of
// each event and the outbound traffic one account can cause.
const MaxWebhookEndpoints = 20

// maxURLLen bounds an endpoint URL.
const maxURLLen = 2048

// dnsTimeout bounds the resolution of an endpoint's host.
const dnsTimeout = 5 * time.Second

// DisabledByAPI is the disabled_reason of an endpoint disabled with PATCH.
const DisabledByAPI = "disabled through the API"

// validEvents checks an events list and answers it without duplicates, in
// the order given.
func validEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, badRequest("events must list at least one of %s", strings.Join(webhook.EventTypes(), ", "))
	}
	out := make([]string, 0, len(events))
	for _, e := range events {
		if !webhook.ValidEvent(e) {
			return nil, badRequest("events: %q is not an event type; use %s", e, strings.Join(webhook.EventTypes(), ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// validURL checks an endpoint URL, resolving its host unless private
// addresses are allowed. The message names the problem; the resolved
// address is the customer's own DNS, so naming it reveals nothing of ours.
func (s *Server) validURL(ctx context.Context, raw string) error {
	if raw == "" {
		return badRequest("url is required")
	}
	if len(raw) > maxURLLen {
		return badRequest("url must be at most %d characters", maxURLLen)
	}
	// A resolver that hangs must not hang the request.
	rctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	err := webhook.ValidateURL(rctx, raw, s.opts.WebhookAllowPrivate, nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, webhook.ErrForbiddenAddress):
		return badRequest("url must point to a public address: %s", strings.TrimPrefix(err.Error(), "webhook: "))
	case errors.Is(err, webhook.ErrInvalidURL), errors.Is(err, webhook.ErrUnresolvable):
		return badRequest("url: %s", strings.TrimPrefix(err.Error(), "webhook: "))
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

func (s *Server) listWebhooks(c *gin.Context) error {
	list, err := store.ListWebhookEndpoints(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID)
	if err != nil {
		return err
	}
	out := wire.List(list, wire.NewEndpoint)
	c.JSON(http.StatusOK, out)
	return nil
}

type createWebhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

var errWebhookLimit = newError(http.StatusForbidden, "webhook_limit_reached",
	"an account may have at most %d webhook endpoints; delete one first", MaxWebhookEndpoints)

func (s *Server) createWebhook(c *gin.Context) error {
	var req createWebhookRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	events, err := validEvents(req.Events)
	if err != nil {
		return err
	}
	if err := s.validURL(c.Request.Context(), req.URL); err != nil {
		return err
	}
	if s.opts.SecretBox == nil {
		return errors.New("api: Options.SecretBox is not set; webhook secrets cannot be stored")
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	sealed, err := s.opts.SecretBox.Seal(secret)
	if err != nil {
		return err
	}
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		n, err := store.LockAccountWebhooks(ctx, tx, p.AccountID)
		if err != nil {
			return result{}, err
		}
		if n >= MaxWebhookEndpoints {
			return result{}, errWebhookLimit
		}
		e, err := store.InsertWebhookEndpoint(ctx, tx, store.WebhookEndpoint{
			ID: id.New(id.Webhook), AccountID: p.AccountID, URL: req.URL, Events: events, SecretSealed: sealed,
		})
		if err != nil {
			return result{}, err
		}
		return result{
			status:   http.StatusCreated,
			body:     wire.EndpointWithSecret{Endpoint: wire.NewEndpoint(e), Secret: secret},
			location: "/api/v1/webhooks/" + e.ID,
		}, nil
	})
}

// updateWebhookRequest: absent fields stay as they are.
type updateWebhookRequest struct {
	URL     *string   `json:"url"`
	Events  *[]string `json:"events"`
	Enabled *bool     `json:"enabled"`
}

func (s *Server) updateWebhook(c *gin.Context) error {
	whID := c.Param("id")
	if !id.HasPrefix(whID, id.Webhook) {
		return errNotFound
	}
	var req updateWebhookRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.URL == nil && req.Events == nil && req.Enabled == nil {
		return badRequest("nothing to change: give url, events or enabled")
	}
	u := store.WebhookEndpointUpdate{URL: req.URL, Enabled: req.Enabled, DisabledReason: DisabledByAPI}
	if req.Events != nil {
		events, err := validEvents(*req.Events)
		if err != nil {
			return err
		}
		u.Events = events
	}
	if req.URL != nil {
		if err := s.validURL(c.Request.Context(), *req.URL); err != nil {
			return err
		}
	}
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		e, err := store.UpdateWebhookEndpoint(ctx, tx, p.AccountID, whID, u)
		if err != nil {
			return result{}, err
		}
		return result{status: http.StatusOK, body: wire.NewEndpoint(e)}, nil
	})
}

func (s *Server) deleteWebhook(c *gin.Context) error {
	whID := c.Param("id")
	if !id.HasPrefix(whID, id.Webhook) {
		return errNotFound
	}
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		if err := store.DeleteWebhookEndpoint(ctx, tx, p.AccountID, whID); err != nil {
			return result{}, err
		}
		return result{status: http.StatusNoContent}, nil
	})
}

var errWebhookDisabled = newError(http.StatusConflict, "webhook_disabled",
	`the endpoint is disabled; enable it with PATCH {"enabled": true} before testing it`)

// testData is the data of a webhook.test event.
type testData struct {
	WebhookID string `json:"webhook_id"`
	Message   string `json:"message"`
}

// testWebhook queues a webhook.test event to one endpoint, whatever events
// it subscribes to, and answers the delivery; its progress shows in the
// endpoint's deliveries.
func (s *Server) testWebhook(c *gin.Context) error {
	whID := c.Param("id")
	if !id.HasPrefix(whID, id.Webhook) {
		return errNotFound
	}
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		e, err := store.GetWebhookEndpoint(ctx, tx, p.AccountID, whID)
		if err != nil {
			return result{}, err
		}
		if !e.Enabled {
			return result{}, errWebhookDisabled
		}
		data, err := json.Marshal(testData{WebhookID: e.ID, Message: "This is a test event sent from the MyOpenClaw Developer API."})
		if err != nil {
			return result{}, err
		}
		payload, err := json.Marshal(webhook.Event{Type: webhook.EventTest, Timestamp: time.Now().UTC(), Data: data})
		if err != nil {
			return result{}, err
		}
		d, err := store.QueueWebhookEventTo(ctx, tx, p.AccountID, e.ID, id.New(id.Event), webhook.EventTest, payload)
		if err != nil {
			return result{}, err
		}
		return result{
			status: http.StatusAccepted,
			body:   wire.NewDelivery(d, nil),
			afterCommit: func(ctx context.Context) {
				task, opts := jobs.NewDeliveryTask(d.ID, 0, time.Now())
				jobs.Enqueue(ctx, s.opts.Enqueuer, s.log, task, opts...)
			},
		}, nil
	})
}

// listDeliveries serves an endpoint's deliveries, newest first, optionally
// in one status, each with its attempts.
func (s *Server) listDeliveries(c *gin.Context) error {
	whID := c.Param("id")
	if !id.HasPrefix(whID, id.Webhook) {
		return errNotFound
	}
	status := c.Query("status")
	if status != "" && !slices.Contains(store.DeliveryStatuses, status) {
		return badRequest("status must be one of %s", strings.Join(store.DeliveryStatuses, ", "))
	}
	scope := "deliveries|" + whID + "|" + status
	limit, before, err := s.pageParams(c, scope)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	accountID := principal(c).AccountID
	if _, err := store.GetWebhookEndpoint(ctx, s.opts.Store.DB, accountID, whID); err != nil {
		return err
	}
	rows, err := store.ListWebhookDeliveries(ctx, s.opts.Store.DB, accountID, whID, status, before, limit+1)
	if err != nil {
		return err
	}
	ids := make([]string, len(rows))
	for i, d := range rows {
		ids[i] = d.ID
	}
	attempts, err := store.ListWebhookAttempts(ctx, s.opts.Store.DB, ids)
	if err != nil {
		return err
	}
	byDelivery := map[string][]store.WebhookAttempt{}
	for _, a := range attempts {
		byDelivery[a.DeliveryID] = append(byDelivery[a.DeliveryID], a)
	}
	c.JSON(http.StatusOK, newPage(c, s, scope, rows, limit, func(d store.WebhookDelivery) int64 { return d.Seq },
		func(d store.WebhookDelivery) wire.Delivery { return wire.NewDelivery(d, byDelivery[d.ID]) }))
	return nil
}
