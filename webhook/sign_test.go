package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/myopenclaw/mocd/webhook"
)

// The test vector of the reference Go library
// (standard-webhooks/libraries/go/webhook_test.go, TestWebhookSign).
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorUnix   = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignKnownVector(t *testing.T) {
	t.Parallel()
	got, err := webhook.Sign(vectorSecret, vectorID, time.Unix(vectorUnix, 0), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSig {
		t.Fatalf("Sign = %s, want %s", got, vectorSig)
	}
}

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	a, b := newSecret(t), newSecret(t)
	if !strings.HasPrefix(a, "whsec_") || len(a) != len("whsec_")+32 {
		t.Fatalf("secret %q: want whsec_ and 32 base64 characters (24 bytes)", a)
	}
	if a == b {
		t.Fatal("two secrets are equal")
	}
	// The reference library must accept our secrets.
	if _, err := standardwebhooks.NewWebhook(a); err != nil {
		t.Fatal(err)
	}
}

func TestOursVerifiedByReference(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	body := []byte(`{"type":"webhook.test","timestamp":"2026-01-02T03:04:05Z","data":{}}`)
	h, err := webhook.Headers(secret, "msg_ours", time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Verify(body, h); err != nil {
		t.Fatalf("reference library refuses our signature: %v", err)
	}
	if err := ref.Verify(append(body, ' '), h); err == nil {
		t.Fatal("reference library accepts a tampered body")
	}
}

func TestReferenceVerifiedByOurs(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	body := []byte(`{"type":"operation.succeeded"}`)
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sig, err := ref.Sign("msg_theirs", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(standardwebhooks.HeaderWebhookID, "msg_theirs")
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, sig)
	if err := webhook.Verify(secret, h, body); err != nil {
		t.Fatalf("our Verify refuses the reference signature: %v", err)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	other := newSecret(t)
	body := []byte(`{"type":"operation.failed","data":{"id":"op_1"}}`)
	now := time.Now()

	signed := func(t *testing.T, ts time.Time) http.Header {
		t.Helper()
		h, err := webhook.Headers(secret, "msg_1", ts, body)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	sigFor := func(t *testing.T, secret string) string {
		t.Helper()
		s, err := webhook.Sign(secret, "msg_1", now, body)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name    string
		header  func(t *testing.T) http.Header
		body    []byte
		secret  string
		wantErr error
	}{
		{
			name:   "valid",
			header: func(t *testing.T) http.Header { return signed(t, now) },
		},
		{
			name:   "secret without prefix",
			header: func(t *testing.T) http.Header { return signed(t, now) },
			secret: strings.TrimPrefix(secret, "whsec_"),
		},
		{
			name:    "tampered body",
			header:  func(t *testing.T) http.Header { return signed(t, now) },
			body:    []byte(`{"type":"operation.succeeded","data":{"id":"op_1"}}`),
			wantErr: webhook.ErrInvalidSignature,
		},
		{
			name: "tampered timestamp",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Set("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10))
				return h
			},
			wantErr: webhook.ErrInvalidSignature,
		},
		{
			name: "tampered id",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Set("webhook-id", "msg_2")
				return h
			},
			wantErr: webhook.ErrInvalidSignature,
		},
		{
			name:    "wrong secret",
			header:  func(t *testing.T) http.Header { return signed(t, now) },
			secret:  other,
			wantErr: webhook.ErrInvalidSignature,
		},
		{
			name: "one of several signatures matches",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Set("webhook-signature", sigFor(t, other)+" v2,xyz "+sigFor(t, secret))
				return h
			},
		},
		{
			name: "right bytes under another version",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Set("webhook-signature", "v1a,"+strings.TrimPrefix(sigFor(t, secret), "v1,"))
				return h
			},
			wantErr: webhook.ErrInvalidSignature,
		},
		{
			name: "empty signature",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Set("webhook-signature", "v1,")
				return h
			},
			wantErr: webhook.ErrInvalidSignature,
		},
		{
			name: "missing id",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Del("webhook-id")
				return h
			},
			wantErr: webhook.ErrMissingHeaders,
		},
		{
			name: "missing signature",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Del("webhook-signature")
				return h
			},
			wantErr: webhook.ErrMissingHeaders,
		},
		{
			name: "svix headers are not read",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				out := http.Header{}
				for k, v := range h {
					out[strings.Replace(k, "Webhook-", "Svix-", 1)] = v
				}
				return out
			},
			wantErr: webhook.ErrMissingHeaders,
		},
		{
			name: "malformed timestamp",
			header: func(t *testing.T) http.Header {
				h := signed(t, now)
				h.Set("webhook-timestamp", "yesterday")
				return h
			},
			wantErr: webhook.ErrInvalidHeaders,
		},
		{
			name:   "within tolerance, past",
			header: func(t *testing.T) http.Header { return signed(t, now.Add(-webhook.Tolerance+10*time.Second)) },
		},
		{
			name:   "within tolerance, future",
			header: func(t *testing.T) http.Header { return signed(t, now.Add(webhook.Tolerance-10*time.Second)) },
		},
		{
			name:    "too old",
			header:  func(t *testing.T) http.Header { return signed(t, now.Add(-webhook.Tolerance-10*time.Second)) },
			wantErr: webhook.ErrTimestampTooOld,
		},
		{
			name:    "too new",
			header:  func(t *testing.T) http.Header { return signed(t, now.Add(webhook.Tolerance+10*time.Second)) },
			wantErr: webhook.ErrTimestampTooNew,
		},
		{
			name:    "invalid secret",
			header:  func(t *testing.T) http.Header { return signed(t, now) },
			secret:  "whsec_not base64!",
			wantErr: webhook.ErrInvalidSecret,
		},
		{
			name:    "empty secret",
			header:  func(t *testing.T) http.Header { return signed(t, now) },
			secret:  "whsec_",
			wantErr: webhook.ErrInvalidSecret,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := body
			if tt.body != nil {
				b = tt.body
			}
			s := secret
			if tt.secret != "" {
				s = tt.secret
			}
			err := webhook.Verify(s, tt.header(t), b)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSignRefusesBadInput(t *testing.T) {
	t.Parallel()
	if _, err := webhook.Sign("whsec_", "msg", time.Now(), nil); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("empty key: %v, want ErrInvalidSecret", err)
	}
	if _, err := webhook.Sign(newSecret(t), "", time.Now(), nil); err == nil {
		t.Error("empty message id accepted")
	}
}

func TestValidEvent(t *testing.T) {
	t.Parallel()
	for _, e := range webhook.EventTypes() {
		if !webhook.ValidEvent(e) {
			t.Errorf("ValidEvent(%q) = false", e)
		}
	}
	for _, e := range []string{"", "operation.*", "Operation.Succeeded", "webhook.ping"} {
		if webhook.ValidEvent(e) {
			t.Errorf("ValidEvent(%q) = true", e)
		}
	}
	if n := len(webhook.EventTypes()); n != 5 {
		t.Errorf("%d event types, want 5", n)
	}
}
