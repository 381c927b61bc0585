package testenv

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for concurrent writers: the log sink of a
// server under test, or a child process's output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// LogProblems logs to t the lines of a JSON log written to b that are
// warnings or errors: what a failed test shows of its servers' logs.
func (b *Buffer) LogProblems(t testing.TB) {
	t.Helper()
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			t.Log(line)
		}
	}
}
