// Command bench measures the REST API of cloud-cli-proxy against baselines in one run and
// prints a table: see bench/README.md.
//
//	go run ./bench -suite all|api|tokens [-results bench/RESULTS.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/bench/internal/sysinfo"
)

func main() {
	o := defaultOptions()
	for _, a := range os.Args[1:] { // -tiny changes the defaults the other flags start from
		if a == "-tiny" || a == "--tiny" || a == "-tiny=true" || a == "--tiny=true" {
			o = tinyOptions()
		}
	}
	flag.StringVar(&o.Suite, "suite", o.Suite, "which cases to run: all, api (hosts list, events query) or tokens")
	flag.IntVar(&o.Clients, "clients", o.Clients, "concurrent HTTP clients (and goroutines of the concurrent in-process case)")
	flag.DurationVar(&o.Duration, "duration", o.Duration, "length of one HTTP measurement (a warm-up of a fifth of it comes first)")
	flag.IntVar(&o.MaxRequests, "requests", o.MaxRequests, "cap on the requests of one HTTP measurement")
	flag.IntVar(&o.Calls, "calls", o.Calls, "in-process Authenticate calls per measurement")
	flag.IntVar(&o.Rounds, "rounds", o.Rounds, "alternate baseline and ours this many times within an HTTP measurement")
	flag.StringVar(&o.CacheDir, "cache", o.CacheDir, "directory caching the events database between runs")
	tiny := flag.Bool("tiny", false, "tiny sizes (what the test runs): 50 hosts, 10,000 events, 1,000 tokens, 300 requests")
	results := flag.String("results", "", "also write the table as Markdown to this file (e.g. bench/RESULTS.md)")
	machine := flag.String("machine", "", "machine description for -results (default: CPU model and count)")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	strict := flag.Bool("strict", false, "exit with status 2 when a target is missed")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (server and load together) to this file")
	flag.Parse()
	_ = *tiny // applied above
	o.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	env := environment()
	fmt.Println(env)
	start := time.Now()
	rows, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	table := renderTable(rows)
	fmt.Print(table)
	fmt.Printf("\n(took %s; load average at the end: %s)\n", time.Since(start).Round(time.Second), sysinfo.LoadAverage())
	if *results != "" {
		if err := writeResults(*results, *machine, env, o, table); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if *strict {
		for _, r := range rows {
			if r.Pass != nil && !*r.Pass {
				os.Exit(2)
			}
		}
	}
}

// run runs the chosen suites and returns their rows.
func run(ctx context.Context, o Options) ([]Row, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	var rows []Row
	switch o.Suite {
	case "all", "api", "tokens":
	default:
		return nil, fmt.Errorf("unknown suite %q (all, api, tokens)", o.Suite)
	}
	if o.Suite == "all" || o.Suite == "api" {
		rs, err := runAPI(ctx, o)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	if o.Suite == "all" || o.Suite == "tokens" {
		rs, err := runTokens(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

func environment() string {
	return fmt.Sprintf("%s %s/%s, GOMAXPROCS=%d, NumCPU=%d, CPU: %s, load average at start: %s",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), sysinfo.CPUModel(), sysinfo.LoadAverage())
}

func fmtDur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Millisecond:
		s = fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		s = fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		s = fmt.Sprintf("%.2f s", d.Seconds())
	}
	if neg {
		return "-" + s
	}
	return s
}

func fmtRate(r float64) string { return fmtCount(int(r+0.5)) + "/s" }

// renderTable is the result as a Markdown table, aligned for the terminal, then the notes.
func renderTable(rows []Row) string {
	head := []string{"case", "ours/s", "ours p50", "ours p99", "baseline/s", "base p50", "base p99", "ratio", "target", "verdict"}
	cells := [][]string{head}
	for _, r := range rows {
		v := "INFO"
		if r.Pass != nil {
			v = map[bool]string{true: "PASS", false: "FAIL"}[*r.Pass]
		}
		oursRate, baseRate, ratio := fmtRate(r.Ours.Rate()), fmtRate(r.Base.Rate()), fmt.Sprintf("%.2f×", r.Ratio())
		if r.NoRate {
			oursRate, baseRate, ratio = "—", "—", "—"
		}
		cells = append(cells, []string{r.Case, oursRate, fmtDur(r.Ours.P50), fmtDur(r.Ours.P99),
			baseRate, fmtDur(r.Base.P50), fmtDur(r.Base.P99), ratio, r.Target, v})
	}
	width := make([]int, len(head))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		b.WriteString("|")
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 || i >= 8 {
				b.WriteString(" " + c + pad + " |")
			} else {
				b.WriteString(" " + pad + c + " |")
			}
		}
		b.WriteString("\n")
	}
	line(cells[0])
	b.WriteString("|")
	for i, w := range width {
		if i == 0 || i >= 8 {
			b.WriteString(" " + strings.Repeat("-", w) + " |")
		} else {
			b.WriteString(" " + strings.Repeat("-", w-1) + ": |")
		}
	}
	b.WriteString("\n")
	for _, row := range cells[1:] {
		line(row)
	}
	b.WriteString("\n")
	for i, r := range rows {
		fmt.Fprintf(&b, "- row %d: %ss per second; baseline: %s; ours %s measured (%d errors), baseline %s.\n",
			i+1, r.Unit, r.Baseline, fmtCount(r.Ours.N), r.Ours.Errs, fmtCount(r.Base.N))
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	return b.String()
}

func writeResults(path, machine, env string, o Options, table string) error {
	if machine == "" {
		machine = sysinfo.Cores()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Bench results\n\nLast run of `go run ./bench -suite %s`, %s, on %s.\n\n", o.Suite, time.Now().UTC().Format("2006-01-02 15:04 MST"), machine)
	fmt.Fprintf(&b, "Environment: %s. %d clients, %s per HTTP measurement (capped at %s requests), %s in-process calls.\n\n",
		env, o.Clients, o.Duration, fmtCount(o.MaxRequests), fmtCount(o.Calls))
	b.WriteString(table)
	fmt.Fprintf(&b, "\nLoad average at the end: %s.\n", sysinfo.LoadAverage())
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
