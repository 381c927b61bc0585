package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// SecretBoxKeyLen is the key length of a SecretBox: AES-256.
const SecretBoxKeyLen = 32

// ErrSealedInvalid is returned by SecretBox.Open when the sealed value was not
// made by Seal with the same key, or was altered since.
var ErrSealedInvalid = errors.New("webhook: sealed secret cannot be opened (wrong key or altered)")

// SecretBox encrypts endpoint signing secrets for storage. mocd must keep the
// secret itself, not a hash, because it signs every delivery with it; sealing
// it with a key held outside the database means that a leaked database dump
// does not let anyone forge webhooks. AES-256-GCM authenticates as well as
// encrypts, so a tampered value fails to open instead of yielding garbage.
// A SecretBox is safe for concurrent use.
type SecretBox struct {
	aead cipher.AEAD
}

// NewSecretBox returns a SecretBox for a 32-byte key.
func NewSecretBox(key []byte) (*SecretBox, error) {
	if len(key) != SecretBoxKeyLen {
		return nil, fmt.Errorf("webhook: secret box key is %d bytes, want %d", len(key), SecretBoxKeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new secret box: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new secret box: %w", err)
	}
	return &SecretBox{aead: aead}, nil
}

// SecretBoxFromString returns a SecretBox for a key given as configuration
// text. s is tried, in order, as standard base64, URL-safe base64 (padded or
// not) and hex; the first that decodes to exactly 32 bytes is the key. Any
// other non-empty s is a passphrase, and the key is its SHA-256.
//
// The passphrase form exists so that a development setup works with any
// string. SHA-256 is not a password hash: a short or guessable passphrase
// gives a guessable key. In production, use 32 random bytes, for example
// `openssl rand -base64 32`.
func SecretBoxFromString(s string) (*SecretBox, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("webhook: empty secret box key")
	}
	decoders := []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString,
		base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString,
		base64.RawURLEncoding.DecodeString,
		hex.DecodeString,
	}
	for _, decode := range decoders {
		if key, err := decode(s); err == nil && len(key) == SecretBoxKeyLen {
			return NewSecretBox(key)
		}
	}
	key := sha256.Sum256([]byte(s))
	return NewSecretBox(key[:])
}

// Seal encrypts plaintext under a fresh random nonce and returns the nonce
// followed by the ciphertext and its tag. Sealing the same secret twice gives
// different bytes, so equal secrets cannot be spotted in the database.
func (b *SecretBox) Seal(plaintext string) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal secret: %w", err)
	}
	return b.aead.Seal(nonce, nonce, []byte(plaintext), nil), nil
}

// Open decrypts a value made by Seal. It returns ErrSealedInvalid when the
// key is wrong or the value was altered or truncated.
func (b *SecretBox) Open(sealed []byte) (string, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return "", ErrSealedInvalid
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", ErrSealedInvalid
	}
	return string(plain), nil
}
