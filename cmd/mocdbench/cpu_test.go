package main

import (
	"os"
	"testing"
)

func TestPeakRSS(t *testing.T) {
	kb, ok := procPeakRSS(os.Getpid())
	if !ok || kb < 1024 {
		t.Fatalf("this process's peak resident set: %d KiB, %v", kb, ok)
	}
	if _, ok := procPeakRSS(-1); ok {
		t.Error("a peak for no process")
	}
	got := maxPeaks(map[string]int64{"api": 10, "worker": 7}, nil, map[string]int64{"api": 4, "flysim": 3})
	if len(got) != 3 || got["api"] != 10 || got["worker"] != 7 || got["flysim"] != 3 {
		t.Errorf("maxPeaks: %v", got)
	}
	if maxPeaks(nil, nil) != nil {
		t.Error("maxPeaks of nothing is not nil")
	}
}
