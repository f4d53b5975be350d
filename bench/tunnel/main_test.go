package main

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" { // re-executed as the measuring process
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := runChild(ctx, os.Stdin, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			os.Stderr.WriteString("tunnel-bench: server: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestReport checks the table's arithmetic on made-up numbers (no lab needed).
func TestReport(t *testing.T) {
	r := &Report{Opts: Options{MiB: 8, Rounds: 3, Attaches: 2, Kinds: kindNames()}, Result: childResult{
		Baseline: rowResult{Name: "veth (baseline)", MiBps: []float64{100, 300, 200}, Bytes: 3 << 30, CPULab: 1.5,
			Setup: []time.Duration{time.Millisecond, 3 * time.Millisecond}, FirstByte: []time.Duration{2 * time.Millisecond}},
		Tunnels: []rowResult{
			{Name: "wireguard", MiBps: []float64{50, 40, 60}, Bytes: 3 << 30, CPUServer: 3},
			{Name: "socks", Unsupported: "tunnel_type \"proxy\" is not supported"},
			{Name: "trojan", Err: "boom"},
		},
	}}
	if got := r.Ratio(r.Result.Tunnels[0]); math.Abs(got-0.25) > 1e-9 {
		t.Fatalf("ratio %v, want 0.25 (p50 50 / p50 200)", got)
	}
	md := r.Markdown()
	for _, want := range []string{
		"| veth (baseline) | 200 MiB/s | 100 · 300 · 200 | 1.00× (baseline) | 2.0 ms | 2.0 ms | 0.00 · 0.50 · 0.00 |",
		"| `wireguard` | 50 MiB/s | 50 · 40 · 60 | 0.25× |",
		"Ratio per round: 0.50, 0.13, 0.30.",
		"| `socks` | not measured |",
		"**trojan: error**: boom",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestSmallRun runs the whole benchmark with tiny sizes: the lab, every row, the cleanup.
// It checks that everything is measured, not the numbers. It needs root and the lab's tools
// (skips without them, fails with CI=true).
func TestSmallRun(t *testing.T) {
	o := Options{MiB: 4, Rounds: 2, Attaches: 1, Kinds: kindNames(), Timeout: 5 * time.Minute, Log: io.Discard}
	if testing.Verbose() {
		o.Log = os.Stderr
	}
	if err := preflight(o); err != nil {
		var ue *UnavailableError
		if errors.As(err, &ue) && os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	rows := rep.Rows()
	if len(rows) != len(kinds)+1 {
		t.Fatalf("%d rows, want %d", len(rows), len(kinds)+1)
	}
	for _, row := range rows {
		if row.Err != "" || row.Unsupported != "" {
			t.Errorf("%s: %s%s", row.Name, row.Err, row.Unsupported)
			continue
		}
		if len(row.MiBps) != o.Rounds || len(row.Setup) != o.Attaches || len(row.FirstByte) != o.Attaches {
			t.Errorf("%s: incomplete: %+v", row.Name, row)
		}
		if math.IsNaN(rep.Ratio(row)) {
			t.Errorf("%s: no ratio", row.Name)
		}
	}
	if _, err := os.Stat("/run/netns/cbtp" + rep.ID); err == nil {
		t.Errorf("namespace cbtp%s left behind", rep.ID)
	}
	if _, err := os.Stat(stateRoot + "/" + rep.ID); err == nil {
		t.Errorf("state directory of %s left behind", rep.ID)
	}
	t.Logf("\n%s", rep.Table())
}
