package client

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The published test vector of the Standard Webhooks specification's
// reference libraries (the same message in every language's test suite).
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecUnix   = 1614265330
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// A well-formed signature that matches nothing.
	vecWrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func vecHeader(sig string, unix int64) http.Header {
	h := http.Header{}
	h.Set("webhook-id", vecID)
	h.Set("webhook-timestamp", strconv.FormatInt(unix, 10))
	h.Set("webhook-signature", sig)
	return h
}

func TestSignWebhookVector(t *testing.T) {
	h, err := SignWebhook(vecSecret, vecID, time.Unix(vecUnix, 0), []byte(vecBody))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Get("webhook-signature"); got != vecSig {
		t.Fatalf("signature %s, want %s", got, vecSig)
	}
	// The secret without its prefix signs the same.
	h2, _ := SignWebhook(strings.TrimPrefix(vecSecret, "whsec_"), vecID, time.Unix(vecUnix, 0), []byte(vecBody))
	if h2.Get("webhook-signature") != vecSig {
		t.Error("the bare base64 secret signs differently")
	}
}

func TestVerifyWebhookVectors(t *testing.T) {
	now := time.Unix(vecUnix, 0)
	secret2, _ := NewWebhookSecret()
	other, _ := SignWebhook(secret2, vecID, now, []byte(vecBody))
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		at     time.Time
		want   error
	}{
		{"valid", vecHeader(vecSig, vecUnix), vecBody, now, nil},
		{"two signatures, the second matches (a rotated secret)", vecHeader(other.Get("webhook-signature")+" "+vecSig, vecUnix), vecBody, now, nil},
		{"two signatures, the first matches", vecHeader(vecSig+" "+vecWrong, vecUnix), vecBody, now, nil},
		{"several, with another version and the match in between", vecHeader(vecWrong+" v2,"+vecSig[3:]+" "+vecSig+" "+vecWrong, vecUnix), vecBody, now, nil},
		{"only a v2 with the right bytes", vecHeader("v2,"+vecSig[3:], vecUnix), vecBody, now, ErrWebhookSignature},
		{"wrong signature", vecHeader(vecWrong, vecUnix), vecBody, now, ErrWebhookSignature},
		{"two wrong signatures", vecHeader(vecWrong+" "+other.Get("webhook-signature"), vecUnix), vecBody, now, ErrWebhookSignature},
		{"partial signature", vecHeader("v1,", vecUnix), vecBody, now, ErrWebhookSignature},
		{"tampered body", vecHeader(vecSig, vecUnix), `{"test": 2432232315}`, now, ErrWebhookSignature},
		{"other timestamp", vecHeader(vecSig, vecUnix+1), vecBody, now, ErrWebhookSignature},
		{"missing id", func() http.Header { h := vecHeader(vecSig, vecUnix); h.Del("webhook-id"); return h }(), vecBody, now, ErrWebhookHeaders},
		{"missing timestamp", func() http.Header { h := vecHeader(vecSig, vecUnix); h.Del("webhook-timestamp"); return h }(), vecBody, now, ErrWebhookHeaders},
		{"missing signature", func() http.Header { h := vecHeader(vecSig, vecUnix); h.Del("webhook-signature"); return h }(), vecBody, now, ErrWebhookHeaders},
		{"timestamp not a number", vecHeader(vecSig, vecUnix), vecBody, now, nil},
		{"too old", vecHeader(vecSig, vecUnix), vecBody, now.Add(WebhookTolerance + time.Second), ErrWebhookTimestamp},
		{"too new", vecHeader(vecSig, vecUnix), vecBody, now.Add(-WebhookTolerance - time.Second), ErrWebhookTimestamp},
		{"at the edge of the tolerance", vecHeader(vecSig, vecUnix), vecBody, now.Add(WebhookTolerance), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "timestamp not a number" {
				tc.header.Set("webhook-timestamp", "soon")
				tc.want = ErrWebhookHeaders
			}
			err := verifyWebhookAt(vecSecret, tc.header, []byte(tc.body), tc.at)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyWebhookSecrets(t *testing.T) {
	for _, bad := range []string{"", "whsec_", "whsec_not base64!"} {
		if err := VerifyWebhook(bad, vecHeader(vecSig, vecUnix), []byte(vecBody)); !errors.Is(err, ErrWebhookSecret) {
			t.Errorf("secret %q: err = %v", bad, err)
		}
	}
	s, err := NewWebhookSecret()
	if err != nil || !strings.HasPrefix(s, "whsec_") || len(s) != len("whsec_")+32 {
		t.Fatalf("secret %q, %v", s, err)
	}
	body := []byte(`{"type":"webhook.test"}`)
	h, _ := SignWebhook(s, "evt_1", time.Now(), body)
	if err := VerifyWebhook(s, h, body); err != nil {
		t.Fatalf("own signature refused: %v", err)
	}
}
