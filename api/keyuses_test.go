package api

import (
	"testing"
	"time"
)

// TestKeyUsesCountsPerUTCDay: requests are counted per key and UTC day
// (a request at 23:59 in New York is on the next UTC day), take starts
// afresh, and counts whose flush failed are added to the new ones.
func TestKeyUsesCountsPerUTCDay(t *testing.T) {
	u := newKeyUses()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	u.mark("acct_a", "key_1", time.Date(2025, 3, 10, 23, 59, 0, 0, time.UTC))
	u.mark("acct_a", "key_1", time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC))
	u.mark("acct_a", "key_1", time.Date(2025, 3, 10, 23, 59, 0, 0, ny)) // 03:59 on the 11th, UTC
	u.mark("acct_a", "key_2", time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC))
	used, counts := u.take()
	want := map[usageDay]int64{
		{"acct_a", "key_1", "2025-03-10"}: 2,
		{"acct_a", "key_1", "2025-03-11"}: 1,
		{"acct_a", "key_2", "2025-03-11"}: 1,
	}
	if len(counts) != len(want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%v: %d, want %d", k, counts[k], n)
		}
	}
	if len(used) != 2 {
		t.Errorf("last used of %d keys, want 2", len(used))
	}
	if used2, counts2 := u.take(); len(used2) != 0 || len(counts2) != 0 {
		t.Fatalf("take did not start afresh: %v %v", used2, counts2)
	}
	u.mark("acct_a", "key_2", time.Date(2025, 3, 11, 1, 0, 0, 0, time.UTC))
	u.putBackCounts(counts)
	_, again := u.take()
	if again[usageDay{"acct_a", "key_2", "2025-03-11"}] != 2 || again[usageDay{"acct_a", "key_1", "2025-03-10"}] != 2 {
		t.Errorf("after a failed flush: %v", again)
	}
}
