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
//
// A box may also hold previous keys (WithPrevious) so that MOC_SECRET_KEY
// can be rotated: it seals with its current key only and opens with the
// current key or any previous one.
type SecretBox struct {
	aead     cipher.AEAD
	previous []cipher.AEAD
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

// SecretBoxFromStrings is SecretBoxFromString for the current key that also
// opens what any of the previous keys sealed (MOC_SECRET_KEY and
// MOC_SECRET_KEY_PREVIOUS). Empty previous entries are ignored.
func SecretBoxFromStrings(current string, previous []string) (*SecretBox, error) {
	b, err := SecretBoxFromString(current)
	if err != nil {
		return nil, err
	}
	var olds []*SecretBox
	for i, p := range previous {
		if strings.TrimSpace(p) == "" {
			continue
		}
		old, err := SecretBoxFromString(p)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		olds = append(olds, old)
	}
	return b.WithPrevious(olds...), nil
}

// WithPrevious returns a box that seals with b's key and opens with b's key
// or the current key of any box in previous.
func (b *SecretBox) WithPrevious(previous ...*SecretBox) *SecretBox {
	out := &SecretBox{aead: b.aead, previous: append([]cipher.AEAD(nil), b.previous...)}
	for _, p := range previous {
		out.previous = append(out.previous, p.aead)
	}
	return out
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

// Open decrypts a value made by Seal with the current key or a previous
// one. It returns ErrSealedInvalid when no key opens it or the value was
// altered or truncated.
func (b *SecretBox) Open(sealed []byte) (string, error) {
	plain, _, err := b.open(sealed)
	return plain, err
}

// Reseal returns sealed re-encrypted under the current key when only a
// previous key opens it, and changed=false when the current key already
// does: what an operator's rotation needs to retire a previous key.
func (b *SecretBox) Reseal(sealed []byte) (resealed []byte, changed bool, err error) {
	plain, current, err := b.open(sealed)
	if err != nil || current {
		return sealed, false, err
	}
	out, err := b.Seal(plain)
	if err != nil {
		return sealed, false, err
	}
	return out, true, nil
}

// open tries the current key, then the previous ones; current says which
// opened it.
func (b *SecretBox) open(sealed []byte) (plain string, current bool, err error) {
	for i, aead := range append([]cipher.AEAD{b.aead}, b.previous...) {
		n := aead.NonceSize()
		if len(sealed) < n+aead.Overhead() {
			return "", false, ErrSealedInvalid
		}
		if p, err := aead.Open(nil, sealed[:n], sealed[n:], nil); err == nil {
			return string(p), i == 0, nil
		}
	}
	return "", false, ErrSealedInvalid
}
