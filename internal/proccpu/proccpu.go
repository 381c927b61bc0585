// Package proccpu reads a process's CPU time from /proc, for the load
// harness and the benchmarks that report CPU per operation.
package proccpu

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ClockTick is USER_HZ, the unit of /proc's CPU times (ticks a second);
// 100 on every Linux this runs on (sysconf(_SC_CLK_TCK) needs cgo).
const ClockTick = 100

// Of returns process pid's user+system CPU time so far, in clock ticks
// (10ms): measure spans of seconds.
func Of(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proccpu: /proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("proccpu: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proccpu: /proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / ClockTick, nil
}
