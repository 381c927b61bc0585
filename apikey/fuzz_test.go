package apikey_test

import (
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/apikey"
)

// FuzzParse (issue 12): any token parses or is ErrMalformed, without I/O; a
// token that parses has the shape of a minted one.
func FuzzParse(f *testing.F) {
	f.Add(apikey.Mint(apikey.NewKeyID(), []byte("p")).Plain)
	for _, seed := range []string{"", "moc_", "moc_AAAAAAAAAAAAAAAA_" + strings.Repeat("b", 36), strings.Repeat("\x00", apikey.TokenLen), "moc_key_" + strings.Repeat("é", 20)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		keyID, secret, err := apikey.Parse(tok)
		if err != nil {
			if err != apikey.ErrMalformed {
				t.Fatalf("Parse(%q): %v", tok, err)
			}
			return
		}
		if len(tok) != apikey.TokenLen || !strings.HasPrefix(tok, "moc_") || !strings.HasPrefix(keyID, "key_") || !strings.HasSuffix(tok, secret) {
			t.Fatalf("Parse(%q) = %q, %q", tok, keyID, secret)
		}
	})
}
