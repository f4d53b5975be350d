package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestTinyRun runs every suite at tiny sizes (50 hosts, 10,000 events, 1,000 tokens, a few
// hundred requests per measurement) so the bench keeps compiling and working. It checks the
// table, not the numbers: verdicts depend on the machine.
func TestTinyRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := tinyOptions()
	o.CacheDir = t.TempDir()
	o.Logf = t.Logf
	start := time.Now()
	rows, err := run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tiny run took %s", time.Since(start).Round(time.Millisecond))
	want := []string{
		"1. GET /v1/admin/hosts (50 hosts, 64 clients)",
		"2. GET /v1/admin/events?host_id&since&until&limit=50 (10,000 events, 64 clients)",
		"2. GET /v1/admin/events?host_id&since&until&limit=50 (10,000 events, 64 clients), server time",
		"2. GET /v1/admin/events?host_id&since&until&limit=50 (10,000 events, 1 client)",
		"3. svc.Authenticate(token), in-process, 1,000 stored, 1 goroutine",
		"3. svc.Authenticate(token), in-process, 1,000 stored, 64 goroutines",
		"3. GET /v1/auth/me with a token vs GET /healthz (64 clients)",
		"3. GET /v1/auth/me with a token vs GET /healthz (1 client)",
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		if r.Case != want[i] {
			t.Errorf("row %d is %q, want %q", i+1, r.Case, want[i])
		}
		if r.Ours.N == 0 || r.Base.N == 0 || r.Ours.Errs != 0 || r.Base.Errs != 0 {
			t.Errorf("row %q: ours %d measured (%d errors), baseline %d (%d errors)", r.Case, r.Ours.N, r.Ours.Errs, r.Base.N, r.Base.Errs)
		}
		if r.Ours.P50 <= 0 || r.Ours.P99 < r.Ours.P50 || r.Base.P50 <= 0 || r.Base.P99 < r.Base.P50 {
			t.Errorf("row %q: implausible latencies %+v / %+v", r.Case, r.Ours, r.Base)
		}
		if !r.NoRate && (r.Ours.Rate() <= 0 || r.Base.Rate() <= 0) {
			t.Errorf("row %q: no rate", r.Case)
		}
		if (r.Pass == nil) != strings.HasPrefix(r.Target, "info") {
			t.Errorf("row %q: target %q but verdict %v", r.Case, r.Target, r.Pass)
		}
	}
	table := renderTable(rows)
	lines := strings.Split(table, "\n")
	if !strings.HasPrefix(lines[0], "| case") || !strings.Contains(lines[0], "| verdict |") {
		t.Errorf("table header: %q", lines[0])
	}
	for i, w := range want {
		line := lines[2+i]
		if !strings.HasPrefix(line, "| "+w+" ") {
			t.Errorf("table line %d: %q", i+3, line)
		}
		if !strings.Contains(line, "| PASS ") && !strings.Contains(line, "| FAIL ") && !strings.Contains(line, "| INFO ") {
			t.Errorf("table line %d has no verdict: %q", i+3, line)
		}
	}
	if t.Failed() {
		t.Log("\n" + table)
	}
}
