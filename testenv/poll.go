package testenv

import (
	"testing"
	"time"
)

// PollTimeout is how long Eventually waits: long enough for anything a
// slow, loaded CI machine does in a test, and only ever spent by a test
// that is failing anyway.
const PollTimeout = 30 * time.Second

// pollEvery spaces the checks of Poll.
const pollEvery = 10 * time.Millisecond

// Poll checks cond until it holds, answering true, or until within has
// passed, answering false. It is the one polling loop of the tests: a
// caller that wants its own failure message (the state it last saw) uses
// it; the others use Eventually.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// Eventually polls cond until it holds, failing the test with "timed out
// waiting for what" after PollTimeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Poll(PollTimeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}
