// Package id makes the prefixed, opaque identifiers of API.md: inst_…, op_…,
// key_…, wh_…, evt_…. They carry no meaning a client could rely on: order
// comes from each table's sequence, not from the id.
package id

import (
	"crypto/rand"
	"strings"
)

// Alphabet is base62: digits, upper case, lower case. Tokens use it too.
const Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Prefixes of the public identifiers.
const (
	Instance  = "inst"
	Operation = "op"
	Key       = "key"
	Webhook   = "wh"
	Event     = "evt"
	Account   = "acct"
	Delivery  = "dlv"
	AuditLog  = "log"
)

// randomLen of 20 base62 characters carries about 119 bits.
const randomLen = 20

// New returns prefix + "_" + 20 random base62 characters.
func New(prefix string) string {
	return prefix + "_" + Random(randomLen)
}

// Random returns n characters drawn uniformly from Alphabet with crypto/rand.
func Random(n int) string {
	var b strings.Builder
	b.Grow(n)
	buf := make([]byte, n+n/2)
	for b.Len() < n {
		if _, err := rand.Read(buf); err != nil {
			panic("id: crypto/rand failed: " + err.Error())
		}
		for _, c := range buf {
			// 248 = 4*62: rejecting the rest keeps the draw uniform.
			if c < 248 && b.Len() < n {
				b.WriteByte(Alphabet[c%62])
			}
		}
	}
	return b.String()
}

// HasPrefix reports whether s looks like an identifier of the given kind.
// It lets handlers answer 404 for a key id passed where an instance id
// belongs without a database round trip.
func HasPrefix(s, prefix string) bool {
	if len(s) <= len(prefix)+1 || !strings.HasPrefix(s, prefix) || s[len(prefix)] != '_' {
		return false
	}
	for _, c := range s[len(prefix)+1:] {
		if !strings.ContainsRune(Alphabet, c) {
			return false
		}
	}
	return true
}
