package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" { // re-executed as the gateway process
		if err := runChild(); err != nil {
			os.Stderr.WriteString("bench child: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchMissing skips naming what is missing, or fails when CI=true.
func benchMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// TestSmallBench runs a small version of the benchmark end to end: it checks that every
// measurement is taken and sane, not the performance targets (a loaded test machine
// would make them flaky; run `go run ./bench/ssh` for those).
func TestSmallBench(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		benchMissing(t, "OpenSSH client missing (apt-get install openssh-client): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		cancel()
		benchMissing(t, "docker client: %v", err)
	}
	_, perr := cli.Ping(ctx)
	_, ierr := cli.ImageInspect(ctx, benchImage())
	cli.Close()
	cancel()
	if perr != nil {
		benchMissing(t, "docker engine unreachable: %v", perr)
	}
	if ierr != nil {
		benchMissing(t, "test image %s missing (bash deploy/testimage/build.sh): %v", benchImage(), ierr)
	}

	var log io.Writer = io.Discard
	if testing.Verbose() {
		log = os.Stderr
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer rcancel()
	res, err := Run(rctx, Config{N: 3, StreamBytes: 16 << 20, StreamRuns: 1, Idle: 5}, log)
	if err != nil {
		t.Fatal(err)
	}
	if res.SetupGateway <= 0 || res.SetupDirect <= 0 || res.Handshake <= 0 || res.HandshakeGo <= 0 {
		t.Fatalf("set-up times not measured: %+v", res)
	}
	if res.ThroughputGateway <= 0 || res.ThroughputOpenSSH <= 0 || res.ThroughputDirect <= 0 {
		t.Fatalf("throughput not measured (a short stream?): %+v", res)
	}
	if res.RSSAfter == 0 || res.HeapAfter == 0 || res.GoroutinesAfter <= res.GoroutinesBefore {
		t.Fatalf("idle sessions not visible in the gateway process: %+v", res)
	}
	if res.CipherOpenSSH != "aes128-gcm@openssh.com" {
		t.Fatalf("OpenSSH negotiated %q with the gateway, want aes128-gcm@openssh.com", res.CipherOpenSSH)
	}
	// The headings are always printed; what the run can get wrong is a value the table
	// derives from the measurements (a ratio of a zero, a total of nothing).
	table := res.Markdown()
	for _, bad := range []string{"NaN", "Inf", "| 0.0 ms |", "| 0 MB/s"} { // ("100.0 ms |" is a value)
		if strings.Contains(table, bad) {
			t.Errorf("table has %q:\n%s", bad, table)
		}
	}
	if res.CPUOpenSSH.total() <= 0 || res.CPUDirect.total() <= 0 {
		t.Errorf("CPU per GiB not measured: OpenSSH %s, direct %s", res.CPUOpenSSH, res.CPUDirect)
	}
	t.Logf("\n%s", table)
}

// TestMarkdown checks the table's arithmetic and verdicts on made-up numbers (no engine).
func TestMarkdown(t *testing.T) {
	r := &Results{Cfg: Config{N: 5, StreamBytes: 1 << 30, StreamRuns: 3, Idle: 10},
		SetupGateway: 30 * time.Millisecond, SetupDirect: 10 * time.Millisecond, Handshake: 20 * time.Millisecond,
		ThroughputOpenSSH: 850, ThroughputDirect: 1000, ThroughputGateway: 500, CipherOpenSSH: "aes128-gcm@openssh.com",
		RatioOpenSSH: medianRatio([]float64{800, 850, 900}, []float64{1000, 1000, 1000}), RatioGateway: 0.5,
		CPUOpenSSH: cpuShare{1, 2, 1}, CPUDirect: cpuShare{1, 0, 1}, CPUGateway: cpuShare{1, 2, 3},
		HeapPerSession: 2048, RSSPerSession: 4096}
	md := r.Markdown()
	for _, want := range []string{
		"(median of 5) | 30.0 ms | 10.0 ms | 3.00x direct; 0.86 of budget 35.0 ms | <= 1.5x direct + handshake | PASS |",
		"to /dev/null (medians of 3 rounds; ratio: median of the rounds' ratios) | 850 MB/s | 1000 MB/s | 85% | >= 90% of direct | FAIL |",
		"| 1.00 / 2.00 / 1.00 = 4.00 s | 1.00 / 0.00 / 1.00 = 2.00 s |",
		"| Memory per idle session, Go heap after GC (10 pty shells) | 2.0 KiB |",
		"the ratio is bounded near 50% (OpenSSH) and 33% (x/crypto).",
		"Overall: FAIL",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	r.RatioOpenSSH = 0.9
	if !r.Pass() {
		t.Error("90% of direct and set-up within budget should pass")
	}
	r.Cfg.Only = "memory" // set-up and throughput not run: nothing to fail
	r.SetupGateway, r.RatioOpenSSH = time.Second, 0
	if !r.Pass() || strings.Contains(r.Markdown(), "| Session set-up") {
		t.Errorf("-only memory: pass %v\n%s", r.Pass(), r.Markdown())
	}
}

// TestCPUSampleSub checks that engine processes are matched by pid across two samples.
func TestCPUSampleSub(t *testing.T) {
	a := cpuSample{gateway: 5, client: 3, enginePids: map[int]float64{1: 10, 2: 4}} // 3 exited, 2 started
	b := cpuSample{gateway: 2, client: 1, enginePids: map[int]float64{1: 7, 3: 100}}
	d := a.sub(b)
	if d.gateway != 3 || d.client != 2 || d.engine != 7 {
		t.Errorf("sub = %+v, want gateway 3, client 2, engine 7 (3 from pid 1, 4 from new pid 2)", d)
	}
}
