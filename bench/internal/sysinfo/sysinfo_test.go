package sysinfo

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcCPUMatchesRusage(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc:", err)
	}
	// Burn some CPU so both clocks move well past their resolution (10 ms for /proc).
	deadline := time.Now().Add(200 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	proc, self := ProcCPU(os.Getpid()), SelfCPU()
	if proc <= 0 || self <= 0 {
		t.Fatalf("CPU time not read: /proc %v, rusage %v", proc, self)
	}
	if d := proc - self; d > 0.1 || d < -0.1 {
		t.Errorf("/proc says %.3f s, getrusage %.3f s", proc, self)
	}
	if got := ProcCPU(-1); got != 0 {
		t.Errorf("ProcCPU of no process = %v, want 0", got)
	}
}

func TestSeconds(t *testing.T) {
	if got := Seconds(syscall.Timeval{Sec: 2, Usec: 500000}); got != 2.5 {
		t.Errorf("Seconds = %v, want 2.5", got)
	}
}

func TestDescriptions(t *testing.T) {
	if la := LoadAverage(); la != "unknown" && len(strings.Fields(la)) != 3 {
		t.Errorf("load average %q", la)
	}
	if k := Kernel(); k == "" || strings.ContainsRune(k, 0) {
		t.Errorf("kernel %q", k)
	}
	if !strings.HasSuffix(Cores(), ")") || CPUModel() == "" {
		t.Errorf("cores %q, model %q", Cores(), CPUModel())
	}
}
