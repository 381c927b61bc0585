package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/myopenclaw/mocd/internal/proccpu"
)

// CPU accounting from /proc: where the machine's time went during a
// scenario, per process of ours, and how much went to processes that are
// not ours (other work on a shared machine makes figures noisy; the report
// says how much there was).

// machineCPU returns the busy and total CPU time of the whole machine.
func machineCPU() (busy, total time.Duration) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0
	}
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
	var sum, idle int64
	for i, v := range fields[1:] {
		if i >= 8 { // guest times are already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		sum += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return time.Duration(sum-idle) * time.Second / proccpu.ClockTick, time.Duration(sum) * time.Second / proccpu.ClockTick
}

// cpuSample is one reading of every watched process and the machine.
type cpuSample struct {
	at      time.Time
	byGroup map[string]map[int]time.Duration // group → pid → CPU
	peak    map[string]int64                 // group of one process → its peak resident set, KiB
	busy    time.Duration
	total   time.Duration
}

// procPeakRSS returns a process's peak resident set size so far (VmHWM),
// in KiB.
func procPeakRSS(pid int) (int64, bool) {
	v := firstField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM")
	n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n, err == nil
}

// cpuGroups names the processes to watch: a group may hold several pids
// (the Postgres backends of our database).
type cpuGroups func() map[string][]int

func takeCPU(groups cpuGroups) cpuSample {
	s := cpuSample{at: time.Now(), byGroup: map[string]map[int]time.Duration{}, peak: map[string]int64{}}
	for g, pids := range groups() {
		m := map[int]time.Duration{}
		for _, pid := range pids {
			if d, err := proccpu.Of(pid); err == nil {
				m[pid] = d
			}
		}
		s.byGroup[g] = m
		if len(pids) == 1 {
			if kb, ok := procPeakRSS(pids[0]); ok {
				s.peak[g] = kb
			}
		}
	}
	s.busy, s.total = machineCPU()
	return s
}

// cpuUse is the CPU each group used between two samples, and what the rest
// of the machine used.
type cpuUse struct {
	Elapsed time.Duration
	ByGroup map[string]time.Duration
	// Others is busy time of processes not in any group: other work on the
	// machine, plus kernel time not charged to a process.
	Others time.Duration
	// Busy is the machine's busy time; Capacity is elapsed × cores.
	Busy, Capacity time.Duration
	// PeakRSS is each single-process group's peak resident set (KiB) at
	// the window's end: the largest of the process's life so far.
	PeakRSS map[string]int64
}

// add is u and o, two windows, together.
func (u cpuUse) add(o cpuUse) cpuUse {
	out := cpuUse{Elapsed: u.Elapsed + o.Elapsed, Others: u.Others + o.Others, Busy: u.Busy + o.Busy, Capacity: u.Capacity + o.Capacity}
	if len(u.ByGroup)+len(o.ByGroup) > 0 {
		out.ByGroup = map[string]time.Duration{}
		for _, m := range []map[string]time.Duration{u.ByGroup, o.ByGroup} {
			for k, v := range m {
				out.ByGroup[k] += v
			}
		}
	}
	out.PeakRSS = maxPeaks(u.PeakRSS, o.PeakRSS)
	return out
}

// maxPeaks is the larger peak of each group in any of ms; nil for none.
func maxPeaks(ms ...map[string]int64) map[string]int64 {
	var out map[string]int64
	for _, m := range ms {
		for g, kb := range m {
			if out == nil {
				out = map[string]int64{}
			}
			out[g] = max(out[g], kb)
		}
	}
	return out
}

func cpuBetween(a, b cpuSample) cpuUse {
	u := cpuUse{Elapsed: b.at.Sub(a.at), ByGroup: map[string]time.Duration{}, Busy: b.busy - a.busy, Capacity: b.total - a.total,
		PeakRSS: maxPeaks(b.peak)}
	var ours time.Duration
	for g, now := range b.byGroup {
		var d time.Duration
		for pid, t := range now {
			// A backend that started during the interval counts whole.
			d += t - a.byGroup[g][pid]
		}
		u.ByGroup[g] = d
		ours += d
	}
	u.Others = max(u.Busy-ours, 0)
	return u
}
