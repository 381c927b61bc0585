package client

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (https://www.standardwebhooks.com) headers, as the API
// signs every delivery.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// WebhookTolerance is how far a delivery's timestamp may be from the
// receiver's clock: the specification's 5 minutes.
const WebhookTolerance = 5 * time.Minute

// Errors of VerifyWebhook, to test with errors.Is. A receiver answers 400
// or 401 to any of them.
var (
	ErrWebhookHeaders   = errors.New("moc: webhook: missing or malformed webhook-id, webhook-timestamp or webhook-signature")
	ErrWebhookSignature = errors.New("moc: webhook: no matching signature")
	ErrWebhookTimestamp = errors.New("moc: webhook: timestamp outside the tolerance")
	ErrWebhookSecret    = errors.New("moc: webhook: secret is not whsec_ followed by base64")
)

// VerifyWebhook checks a delivery: body (the raw request body, not a
// re-encoded one) with its headers h must be signed with secret
// ("whsec_…", as CreateWebhook answered it) and be no more than
// WebhookTolerance away from now. webhook-signature may hold several
// space-separated signatures (a sender rotating its secret signs with
// both); one matching v1 signature is enough.
//
// Receivers should also de-duplicate on webhook-id: a retried delivery
// keeps it.
func VerifyWebhook(secret string, h http.Header, body []byte) error {
	return verifyWebhookAt(secret, h, body, time.Now())
}

func verifyWebhookAt(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := webhookKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp), h.Get(HeaderWebhookSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrWebhookHeaders
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrWebhookHeaders, ts)
	}
	want := []byte(base64.StdEncoding.EncodeToString(webhookMAC(key, id, unix, body)))
	matched := false
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		// Constant-time: timing tells a forger nothing.
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			matched = true
			break
		}
	}
	if !matched {
		return ErrWebhookSignature
	}
	// After the signature, so that a timestamp error is only ever reported
	// for an authentic delivery (a clock off, or a replay).
	if d := now.Sub(time.Unix(unix, 0)); d > WebhookTolerance || d < -WebhookTolerance {
		return fmt.Errorf("%w: %s from now", ErrWebhookTimestamp, d.Truncate(time.Second))
	}
	return nil
}

// SignWebhook answers the three Standard Webhooks headers of a delivery of
// body with id at ts, signed with secret: what the API sends, for tests of
// a receiver and for forwarding (moc webhooks listen).
func SignWebhook(secret, id string, ts time.Time, body []byte) (http.Header, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", ErrWebhookHeaders)
	}
	h := http.Header{}
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderWebhookSignature, "v1,"+base64.StdEncoding.EncodeToString(webhookMAC(key, id, ts.Unix(), body)))
	return h, nil
}

// NewWebhookSecret answers a fresh signing secret: whsec_ and the base64 of
// 24 random bytes, the form every Standard Webhooks library takes.
func NewWebhookSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("moc: webhook secret: %w", err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b), nil
}

// webhookKey decodes a secret; the whsec_ prefix is optional, as in the
// reference libraries.
func webhookKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return nil, ErrWebhookSecret
	}
	return key, nil
}

// webhookMAC is HMAC-SHA256 of "id.timestamp.body".
func webhookMAC(key []byte, id string, unix int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(unix, 10) + "."))
	m.Write(body)
	return m.Sum(nil)
}
