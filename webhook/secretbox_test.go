package webhook_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/myopenclaw/mocd/webhook"
)

func TestSecretBoxRoundTrip(t *testing.T) {
	t.Parallel()
	box, err := webhook.NewSecretBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	a, err := box.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	b, err := box.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("sealing twice gives the same bytes: nonce not random")
	}
	if bytes.Contains(a, []byte(secret)) {
		t.Error("sealed value contains the plaintext")
	}
	got, err := box.Open(a)
	if err != nil || got != secret {
		t.Fatalf("Open = %q, %v; want %q", got, err, secret)
	}
}

func TestSecretBoxDetectsTampering(t *testing.T) {
	t.Parallel()
	box, err := webhook.NewSecretBox(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, err := webhook.NewSecretBox(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal("whsec_abc")
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		flipped := bytes.Clone(sealed)
		flipped[i] ^= 0x01
		if _, err := box.Open(flipped); !errors.Is(err, webhook.ErrSealedInvalid) {
			t.Fatalf("byte %d flipped: Open = %v, want ErrSealedInvalid", i, err)
		}
	}
	if _, err := box.Open(sealed[:len(sealed)-1]); !errors.Is(err, webhook.ErrSealedInvalid) {
		t.Errorf("truncated: %v", err)
	}
	if _, err := box.Open(nil); !errors.Is(err, webhook.ErrSealedInvalid) {
		t.Errorf("empty: %v", err)
	}
	if _, err := other.Open(sealed); !errors.Is(err, webhook.ErrSealedInvalid) {
		t.Errorf("wrong key: %v", err)
	}
}

func TestNewSecretBoxKeyLength(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := webhook.NewSecretBox(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key accepted", n)
		}
	}
}

func TestSecretBoxFromString(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xAB, 0xCD}, 16)
	byKey, err := webhook.NewSecretBox(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := byKey.Seal("s")
	if err != nil {
		t.Fatal(err)
	}
	// Every textual form of the same key must open what the key sealed.
	forms := map[string]string{
		"base64":          base64.StdEncoding.EncodeToString(key),
		"raw base64":      base64.RawStdEncoding.EncodeToString(key),
		"url base64":      base64.URLEncoding.EncodeToString(key),
		"raw url base64":  base64.RawURLEncoding.EncodeToString(key),
		"hex":             hex.EncodeToString(key),
		"hex with spaces": " " + hex.EncodeToString(key) + "\n",
	}
	for name, s := range forms {
		box, err := webhook.SecretBoxFromString(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := box.Open(sealed); err != nil || got != "s" {
			t.Errorf("%s: Open = %q, %v", name, got, err)
		}
	}

	// A passphrase gives a working box, stable across calls, different from
	// another passphrase.
	p1, err := webhook.SecretBoxFromString("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	p1again, _ := webhook.SecretBoxFromString("correct horse battery staple")
	p2, _ := webhook.SecretBoxFromString("correct horse battery stapler")
	sealed, err = p1.Seal("s")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p1again.Open(sealed); err != nil || got != "s" {
		t.Errorf("same passphrase: Open = %q, %v", got, err)
	}
	if _, err := p2.Open(sealed); err == nil {
		t.Error("another passphrase opens the value")
	}

	if _, err := webhook.SecretBoxFromString("  "); err == nil {
		t.Error("empty key string accepted")
	}
}
