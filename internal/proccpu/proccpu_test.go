package proccpu

import (
	"crypto/sha256"
	"os"
	"testing"
	"time"
)

// The process's own CPU time grows while it works, and an unknown process
// is an error.
func TestOf(t *testing.T) {
	before, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for after := before; after-before < 20*time.Millisecond; {
		sha256.Sum256(buf)
		if after, err = Of(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Of(1 << 30); err == nil {
		t.Error("Of(an unknown pid): no error")
	}
}
