package webhook

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

// Header names defined by the Standard Webhooks specification. Only these are
// read: the older "svix-*" spellings are deliberately not accepted, so there
// is exactly one way for a delivery to be signed.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far webhook-timestamp may be from the receiver's clock, in
// either direction, before Verify refuses the message. It bounds how long a
// captured delivery can be replayed; 5 minutes is the specification's value
// and leaves room for ordinary clock skew.
const Tolerance = 5 * time.Minute

// SecretPrefix starts every signing secret, so a secret is recognisable in
// configuration and by secret scanners.
const SecretPrefix = "whsec_"

// secretKeyLen is the number of random bytes in a secret made by NewSecret:
// 192 bits, as the specification suggests (between 24 and 64 bytes).
const secretKeyLen = 24

// Errors returned by Verify and Sign, to be tested with errors.Is. A receiver
// usually answers 401 to all of them; they are distinct so that logs can tell
// a forged request from a clock that is off.
var (
	ErrMissingHeaders   = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidHeaders   = errors.New("webhook: malformed webhook-timestamp header")
	ErrInvalidSignature = errors.New("webhook: no matching signature")
	ErrTimestampTooOld  = errors.New("webhook: timestamp too old")
	ErrTimestampTooNew  = errors.New("webhook: timestamp too new")
	ErrInvalidSecret    = errors.New("webhook: secret is not whsec_ followed by base64")
)

// NewSecret returns a fresh signing secret: "whsec_" followed by the standard
// base64 of 24 random bytes.
func NewSecret() (string, error) {
	key := make([]byte, secretKeyLen)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("new webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// decodeSecret returns the HMAC key of a secret. The prefix is optional, as in
// the reference libraries, so a receiver may paste either form.
func decodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSecret, err)
	}
	if len(key) == 0 {
		// An empty key would make every signature forgeable.
		return nil, ErrInvalidSecret
	}
	return key, nil
}

// signature returns the raw HMAC-SHA256 of "msgID.unixSeconds.body".
func signature(key []byte, msgID string, unix int64, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, unix, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// Sign returns the webhook-signature value for one delivery attempt:
// "v1," followed by the base64 HMAC-SHA256 of "msgID.unixTs.body", keyed with
// the key inside secret ("whsec_<base64 key>"). ts is truncated to seconds.
func Sign(secret string, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", err
	}
	if msgID == "" {
		return "", errors.New("webhook: empty message id")
	}
	return "v1," + base64.StdEncoding.EncodeToString(signature(key, msgID, ts.Unix(), body)), nil
}

// Headers returns the three Standard Webhooks headers for one delivery
// attempt, ready to be copied onto the outgoing request. The sender keeps
// msgID the same across retries (receivers de-duplicate on it) and passes the
// time of each attempt as ts (receivers refuse stale timestamps).
func Headers(secret string, msgID string, ts time.Time, body []byte) (http.Header, error) {
	sig, err := Sign(secret, msgID, ts, body)
	if err != nil {
		return nil, err
	}
	h := make(http.Header, 3)
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return h, nil
}

// Verify checks that body, with the webhook-id, webhook-timestamp and
// webhook-signature headers in h, was signed with secret, and that the
// timestamp is within Tolerance of now. webhook-signature may hold several
// space-separated signatures (a sender rotating its secret signs with both);
// one matching "v1" signature is enough, and others are ignored.
//
// body must be the raw request body: verifying a re-encoded JSON document
// fails, because the signature covers the exact bytes.
func Verify(secret string, h http.Header, body []byte) error {
	return verifyAt(secret, h, body, time.Now())
}

func verifyAt(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := decodeSecret(secret)
	if err != nil {
		return err
	}
	msgID, tsRaw, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if msgID == "" || tsRaw == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidHeaders, tsRaw)
	}

	// The signature is checked before the timestamp so that a timestamp error
	// is only ever reported for an authentic message: then it really means
	// that a clock is off or that a genuine delivery is being replayed.
	want := []byte(base64.StdEncoding.EncodeToString(signature(key, msgID, unix, body)))
	matched := false
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		// Constant-time, so response timing tells an attacker nothing about
		// how much of a guessed signature was right.
		if hmac.Equal([]byte(sig), want) {
			matched = true
			break
		}
	}
	if !matched {
		return ErrInvalidSignature
	}

	ts := time.Unix(unix, 0)
	switch {
	case now.Sub(ts) > Tolerance:
		return fmt.Errorf("%w: %s old", ErrTimestampTooOld, now.Sub(ts).Truncate(time.Second))
	case ts.Sub(now) > Tolerance:
		return fmt.Errorf("%w: %s ahead", ErrTimestampTooNew, ts.Sub(now).Truncate(time.Second))
	}
	return nil
}
