package apikey

import (
	"strings"
	"testing"
)

func TestMintParseRoundTrip(t *testing.T) {
	pepper := []byte("pepper")
	tok := Mint(NewKeyID(), pepper)
	if len(tok.Plain) != TokenLen {
		t.Fatalf("len = %d, want %d", len(tok.Plain), TokenLen)
	}
	kid, secret, err := Parse(tok.Plain)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if kid != tok.KeyID {
		t.Errorf("key id = %q, want %q", kid, tok.KeyID)
	}
	if len(secret) < 30 {
		t.Errorf("secret too short: %d", len(secret))
	}
	if !Verify(pepper, secret, tok.Hash) {
		t.Error("secret does not verify against its own hash")
	}
	if Verify([]byte("other"), secret, tok.Hash) {
		t.Error("secret verifies under another pepper")
	}
	if !strings.HasPrefix(tok.Plain, tok.Prefix+"_") {
		t.Errorf("prefix %q is not the start of the token", tok.Prefix)
	}
}

func TestParseRejects(t *testing.T) {
	good := Mint(NewKeyID(), []byte("p")).Plain
	flip := []byte(good)
	if flip[30] == 'a' {
		flip[30] = 'b'
	} else {
		flip[30] = 'a'
	}
	tests := []struct {
		name, token string
	}{
		{name: "empty", token: ""},
		{name: "garbage", token: "hello"},
		{name: "wrong prefix", token: "ghp" + good[3:]},
		{name: "one char changed", token: string(flip)},
		{name: "truncated", token: good[:len(good)-1]},
		{name: "non-base62", token: good[:20] + "!" + good[21:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Parse(tt.token); err != ErrMalformed {
				t.Errorf("Parse(%q) = %v, want ErrMalformed", tt.token, err)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	full, _ := Expand([]string{PresetFull})
	if len(full) != 11 {
		t.Errorf("full = %d scopes, want 11", len(full))
	}
	ro, _ := Expand([]string{PresetReadOnly})
	for _, s := range ro {
		if !strings.HasSuffix(s, ":read") {
			t.Errorf("read-only holds %q", s)
		}
	}
	w, _ := Expand([]string{PresetWrite})
	if len(w) != len(ro)+1 || len(Missing(w, []string{InstanceWrite})) != 0 {
		t.Errorf("write = %v", w)
	}
	if _, err := Expand([]string{"instance:fly"}); err == nil {
		t.Error("unknown scope accepted")
	}
}

func BenchmarkParse(b *testing.B) {
	tok := Mint(NewKeyID(), []byte("p")).Plain
	for b.Loop() {
		if _, _, err := Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}
