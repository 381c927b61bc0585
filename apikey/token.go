// Package apikey is the format of mocd's API tokens and the scopes they carry.
//
// A token reads moc_<key-id>_<secret>. The key id is public (the key object's
// id is "key_" + key-id) and indexes the row; the secret is 30 random base62
// characters followed by a 6-character base62 CRC32 of everything before it,
// as GitHub's tokens do, so a mistyped or random token is refused without a
// database round trip and secret scanners can recognise a real one. Only
// HMAC-SHA256(pepper, secret) is ever stored.
package apikey

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"strings"

	"github.com/myopenclaw/mocd/id"
)

const (
	tokenPrefix = "moc_"
	keyIDLen    = 16
	randomLen   = 30
	checksumLen = 6
	// TokenLen is the length of every token mocd issues.
	TokenLen = len(tokenPrefix) + keyIDLen + 1 + randomLen + checksumLen
)

// ErrMalformed is a token that cannot be one of ours: wrong shape or checksum.
var ErrMalformed = errors.New("malformed token")

// Token is a freshly minted token: Plain is shown to the user once; Hash is
// what is stored.
type Token struct {
	KeyID  string // the public part, "key_…" form
	Plain  string
	Prefix string // shown in listings so users can tell keys apart
	Hash   []byte
}

// NewKeyID returns a fresh public key id ("key_" + 16 base62 characters).
func NewKeyID() string {
	return id.Key + "_" + id.Random(keyIDLen)
}

// Mint makes a new secret for the key keyID ("key_…") and hashes it with pepper.
func Mint(keyID string, pepper []byte) Token {
	kid := strings.TrimPrefix(keyID, id.Key+"_")
	body := tokenPrefix + kid + "_" + id.Random(randomLen)
	plain := body + checksum(body)
	return Token{
		KeyID:  keyID,
		Plain:  plain,
		Prefix: tokenPrefix + kid,
		Hash:   Hash(pepper, plain[len(plain)-randomLen-checksumLen:]),
	}
}

// Parse splits a token into its key id ("key_…") and secret, checking shape
// and checksum. It touches no storage.
func Parse(token string) (keyID, secret string, err error) {
	if len(token) != TokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return "", "", ErrMalformed
	}
	kid := token[len(tokenPrefix) : len(tokenPrefix)+keyIDLen]
	if token[len(tokenPrefix)+keyIDLen] != '_' {
		return "", "", ErrMalformed
	}
	secret = token[len(tokenPrefix)+keyIDLen+1:]
	if !isBase62(kid) || !isBase62(secret) {
		return "", "", ErrMalformed
	}
	body, sum := token[:len(token)-checksumLen], token[len(token)-checksumLen:]
	if !hmac.Equal([]byte(checksum(body)), []byte(sum)) {
		return "", "", ErrMalformed
	}
	return id.Key + "_" + kid, secret, nil
}

// Hash is HMAC-SHA256(pepper, secret).
func Hash(pepper []byte, secret string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// Verify compares secret against a stored hash in constant time.
func Verify(pepper []byte, secret string, stored []byte) bool {
	return hmac.Equal(Hash(pepper, secret), stored)
}

func checksum(s string) string {
	n := crc32.ChecksumIEEE([]byte(s))
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = id.Alphabet[n%62]
		n /= 62
	}
	return string(out[:])
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
