package load

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcUsage is one process's use over a run.
type ProcUsage struct {
	PID             int     `json:"pid"`
	Name            string  `json:"name"`
	CPUS            float64 `json:"cpu_s"` // user + system, first publish to last result
	CPUPerRequestUS float64 `json:"cpu_per_request_us"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"` // the process's peak so far
}

// procWatch measures processes over a run from /proc (Linux): CPU time
// between start and stop, and peak resident memory at stop.
type procWatch struct {
	pids          []int
	before, after []float64 // CPU seconds; -1: unreadable
	peak          []float64 // VmHWM, MiB
	stopped       bool
}

func startProcUsage(pids []int) *procWatch {
	w := &procWatch{pids: pids, before: make([]float64, len(pids))}
	for i, pid := range pids {
		w.before[i] = procCPU(pid)
	}
	return w
}

// stop takes the second reading; later calls do nothing.
func (w *procWatch) stop() {
	if w.stopped {
		return
	}
	w.stopped = true
	w.after, w.peak = make([]float64, len(w.pids)), make([]float64, len(w.pids))
	for i, pid := range w.pids {
		w.after[i], w.peak[i] = procCPU(pid), procPeakRSS(pid)
	}
}

func (w *procWatch) usage(requests int64) []ProcUsage {
	var out []ProcUsage
	for i, pid := range w.pids {
		if w.before[i] < 0 || w.after[i] < 0 {
			continue
		}
		u := ProcUsage{PID: pid, Name: procName(pid), CPUS: round3(w.after[i] - w.before[i]), PeakRSSMiB: round3(w.peak[i])}
		if requests > 0 {
			u.CPUPerRequestUS = round3(u.CPUS / float64(requests) * 1e6)
		}
		out = append(out, u)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// Linux whatever the kernel's own tick.
const clockTicks = 100

// procCPU is pid's user + system CPU time in seconds, or -1.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields 14 and 15 (utime,
	// stime) are the 12th and 13th after it.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (u + st) / clockTicks
}

// procPeakRSS is pid's peak resident set (VmHWM) in MiB, or 0.
func procPeakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024
		}
	}
	return 0
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}
