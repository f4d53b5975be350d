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
	table := res.Markdown()
	for _, want := range []string{"Session set-up", "Throughput", "Memory per idle session", "Overall: "} {
		if !strings.Contains(table, want) {
			t.Fatalf("table lacks %q:\n%s", want, table)
		}
	}
	t.Logf("\n%s", table)
}
