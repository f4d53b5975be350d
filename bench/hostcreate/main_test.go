package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
)

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestTinyRun runs the benchmark with n=2 and one round on the real engine and checks that
// the table has every row and that nothing the run created is left behind.
func TestTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("creates containers on the Docker engine; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{N: 2, Rounds: 1, Image: DefaultImage(), BatchDelay: 2 * time.Millisecond,
		Timeout: 7 * time.Minute, Log: testLog{t}})
	var ue *UnavailableError
	if errors.As(err, &ue) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the benchmark cannot run: %s", ue.Msg)
		}
		t.Skipf("skipping: %s", ue.Msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	table := rep.Table()
	t.Logf("\n%s\n%s", table, rep.Breakdown())
	for _, want := range []string{
		"| case | ours | direct | ratio | target | verdict |",
		"| 1 host, median of 1 |",
		"| 1 host, max of 1 |",
		"| 2 at once, all ready (median of 1 rounds) |",
		"| 2 at once, per-host p50 |",
		"| 2 at once, per-host p99 |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	rows := rep.Rows()
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5", len(rows))
	}
	for _, r := range rows {
		if r.Ours <= 0 || r.Direct <= 0 {
			t.Errorf("row %q has no measurement: ours %s direct %s", r.Case, r.Ours, r.Direct)
		}
	}
	if n := strings.Count(table, "| PASS |") + strings.Count(table, "| MISS |"); n != 5 {
		t.Errorf("%d verdicts, want 5:\n%s", n, table)
	}

	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, label := range []string{directLabel + "=" + rep.runID, runtime.LabelUserID + "=" + rep.userID} {
		args := filters.NewArgs(filters.Arg("label", label))
		cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
		if err != nil {
			t.Fatal(err)
		}
		vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: args})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 0 || len(vs.Volumes) != 0 {
			t.Errorf("left behind with label %s: %d containers, %d volumes", label, len(cs), len(vs.Volumes))
		}
	}
}

func TestPercentileAndTable(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	d := ms(5, 1, 4, 2, 3)
	if got := percentile(d, 50); got != 3*time.Millisecond {
		t.Errorf("p50 %s", got)
	}
	if got := percentile(d, 99); got != 5*time.Millisecond {
		t.Errorf("p99 %s", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing %s", got)
	}
	r := &Report{N: 3, Rounds: 2}
	r.singleOurs.hosts, r.singleDirect.hosts = ms(120, 130), ms(100, 100)
	r.concOurs.walls, r.concDirect.walls = ms(500, 520), ms(300, 310)
	r.concOurs.hosts, r.concDirect.hosts = ms(400, 450, 500), ms(250, 280, 300)
	tab := r.Table()
	for _, want := range []string{
		"| 1 host, median of 2 | 120ms | 100ms | 1.20× | ≤ 1.3× | PASS |",
		"| 1 host, max of 2 | 130ms | 100ms | 1.30× | ≤ 1.3× | PASS |",
		"| 3 at once, all ready (median of 2 rounds) | 500ms | 300ms | 1.67× | ≤ 1.3× | MISS |",
		"| 3 at once, per-host p50 | 450ms | 280ms |",
		"| 3 at once, per-host p99 | 500ms | 300ms |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}
