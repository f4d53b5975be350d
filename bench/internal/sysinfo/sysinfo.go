// Package sysinfo describes the machine a benchmark runs on (CPU model, load average,
// kernel) and reads the CPU time of processes, for the bench programs under bench/.
package sysinfo

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// CPUModel is the first "model name" of /proc/cpuinfo, or GOARCH without one.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// Cores is the default machine description: "N cores (CPU model)".
func Cores() string { return fmt.Sprintf("%d cores (%s)", runtime.NumCPU(), CPUModel()) }

// LoadAverage is the 1, 5 and 15 minute load averages, or "unknown": other processes on
// the machine skew every measurement, tails most.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// Kernel is the kernel release (uname -r), or "unknown".
func Kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "unknown"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// ProcCPU is a process's user + system time (all threads) in seconds, from
// /proc/PID/stat; 0 when it cannot be read.
func ProcCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses and may contain spaces).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// SelfCPU is this process's user + system time in seconds, from getrusage; 0 on error.
func SelfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return Seconds(ru.Utime) + Seconds(ru.Stime)
}

// Seconds converts a Timeval (as in a Rusage) to seconds.
func Seconds(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
