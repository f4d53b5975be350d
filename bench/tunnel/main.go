// Command tunnel measures what the egress tunnels cost a container: download throughput
// inside a container through each tunnel type beside a plain veth, in the same run, and the
// time tunnel.Manager.Attach takes (and until the first byte comes through) beside the set-up
// of a veth.
//
//	go run ./bench/tunnel [-mib 256] [-rounds 3] [-attaches 5] [-docker] [-kinds wireguard,socks,…] [-results bench/tunnel/RESULTS.md]
//
// It needs root, iproute2, nft (or iptables), /dev/net/tun, curl and nsenter. It builds its
// own lab of network namespaces (see lab.go), all named with a random run id, so nothing is
// routed in the machine's own namespace and it never collides with the tunnel tests or
// another run; it removes everything on exit, also on error and on SIGINT/SIGTERM, and a
// later run removes what a killed run left behind.
//
// The rows: the baseline downloads through a veth into the box (the stand-in for a
// container); each tunnel row through tunnel.Manager.Attach with the provider's end (a
// wireguard-go peer, or a tunnel/outbound proxy server) in the provider namespace. The HTTP
// server is in the internet namespace behind the provider's NAT for all rows. Rows are
// measured in rounds whose order rotates, so machine noise hits them alike; the ratio is
// p50 ÷ the veth's p50.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/bench/internal/sysinfo"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel"
)

// Options configure a run.
type Options struct {
	MiB      int // download size per run
	Rounds   int
	Attaches int // set-up samples per row (after one warm-up)
	Docker   bool
	Image    string
	Kinds    []string // rows beside the baseline; empty: all
	Timeout  time.Duration
	Log      io.Writer
	// CPUProfile, when set, is where the measuring process (tunnel.Manager's side) writes a
	// CPU profile of the whole run.
	CPUProfile string
}

func defaultImage() string {
	if v := os.Getenv("CCP_TEST_IMAGE"); v != "" {
		return v
	}
	return "cloud-cli-proxy/managed-test:latest"
}

func kindNames() []string {
	var n []string
	for _, k := range kinds {
		n = append(n, k.Name)
	}
	return n
}

func main() {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runChild(ctx, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "tunnel-bench: server:", err)
			os.Exit(1)
		}
		return
	}
	o := Options{Log: os.Stderr}
	flag.IntVar(&o.MiB, "mib", 256, "MiB downloaded per run")
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds of downloads (every row once per round, order rotating)")
	flag.IntVar(&o.Attaches, "attaches", 5, "set-up samples per row (median), after one warm-up")
	flag.BoolVar(&o.Docker, "docker", false, "boxes are Docker containers of -image with --network none (default: `ip netns exec NS sleep`)")
	flag.StringVar(&o.Image, "image", defaultImage(), "image of the -docker boxes (never pulled)")
	kindList := flag.String("kinds", strings.Join(kindNames(), ","), "tunnel rows to measure beside the veth")
	flag.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "bound on the whole run")
	flag.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the measuring process (tunnel.Manager's side) to this file")
	results := flag.String("results", "", "also write the report as Markdown to this file (e.g. bench/tunnel/RESULTS.md)")
	machine := flag.String("machine", "", "machine description for the report (default: cores and CPU model)")
	flag.Parse()
	for _, k := range strings.Split(*kindList, ",") {
		if k = strings.TrimSpace(k); k != "" {
			o.Kinds = append(o.Kinds, k)
		}
	}

	// The first SIGINT/SIGTERM cancels the run; the cleanup then runs (bounded) before exit.
	// A closed stdout or stderr (`| head`) must not kill the process before its cleanup.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, o)
	if rep != nil {
		rep.Machine = *machine
		md := rep.Markdown()
		fmt.Print(md)
		if *results != "" {
			if werr := os.WriteFile(*results, []byte(md), 0o644); werr != nil {
				err = errors.Join(err, werr)
			} else {
				fmt.Fprintln(os.Stderr, "tunnel-bench: saved", *results)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tunnel-bench:", err)
		os.Exit(1)
	}
}

// UnavailableError reports that the machine cannot run the benchmark (not root, a tool missing).
type UnavailableError struct{ Msg string }

func (e *UnavailableError) Error() string { return e.Msg }

func preflight(o Options) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, t := range []string{"ip", "curl", "nsenter"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	_, nftErr := exec.LookPath("nft")
	_, iptErr := exec.LookPath("iptables")
	if nftErr != nil && iptErr != nil {
		missing = append(missing, "nft or iptables")
	}
	if o.Docker {
		if _, err := exec.LookPath("docker"); err != nil {
			missing = append(missing, "docker")
		} else if out, err := run(nil, "docker", "image", "inspect", "--format", "{{.Id}}", o.Image); err != nil {
			missing = append(missing, "image "+o.Image+" (bash deploy/testimage/build.sh): "+strings.TrimSpace(out))
		}
	}
	if len(missing) > 0 {
		return &UnavailableError{"the tunnel benchmark needs: " + strings.Join(missing, ", ")}
	}
	return nil
}

// Run builds the lab, runs the measuring process in it and returns the report. Whatever it
// created is gone when it returns.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.MiB < 1 || o.Rounds < 1 || o.Attaches < 1 {
		return nil, errors.New("-mib, -rounds and -attaches must be at least 1")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Image == "" {
		o.Image = defaultImage()
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Minute
	}
	var selected []kind
	for _, name := range o.Kinds {
		i := slices.IndexFunc(kinds, func(k kind) bool { return k.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown kind %q (have %s)", name, strings.Join(kindNames(), ", "))
		}
		selected = append(selected, kinds[i])
	}
	if err := preflight(o); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	sweep(o.Log)
	id := randomHex(3)
	rep = &Report{Opts: o, ID: id, Start: time.Now(), LoadStart: sysinfo.LoadAverage()}
	l, err := newLab(id, o.Log)
	defer func() {
		if cerr := l.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.logf("run %s: namespaces %s (server), %s (provider), %s (internet)", id, l.server, l.prov, l.inet)
	if err := l.startHTTP(); err != nil {
		return nil, err
	}
	cfg := childConfig{
		Bytes: int64(o.MiB) << 20, Rounds: o.Rounds, Attaches: o.Attaches,
		URL: "http://" + inetIP + "/bytes", SmallURL: "http://" + inetIP + "/small",
		LabPid: os.Getpid(), ProvNS: "/run/netns/" + l.prov,
	}
	for _, k := range selected {
		e, err := k.start(l, ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: provider end: %w", k.Name, err)
		}
		cfg.Kinds = append(cfg.Kinds, kindSpec{Name: k.Name, Detail: k.Detail, Egress: e})
	}
	var tb, bb *box
	if o.Docker {
		if tb, err = l.newDockerBox("cbtd"+id+"t", o.Image, o.Timeout); err == nil {
			bb, err = l.newDockerBox("cbtd"+id+"b", o.Image, o.Timeout)
		}
	} else {
		if tb, err = l.newNetnsBox("cbtc"+id, o.Timeout); err == nil {
			bb, err = l.newNetnsBox("cbtb"+id, o.Timeout)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("boxes: %w", err)
	}
	cfg.TunnelPid, cfg.BasePid = tb.pid, bb.pid
	l.logf("boxes: tunnel pid %d, baseline pid %d", tb.pid, bb.pid)

	res, err := runServer(ctx, l, cfg, o.CPUProfile, o.Log)
	rep.End, rep.LoadEnd = time.Now(), sysinfo.LoadAverage()
	if res != nil {
		rep.Result = *res
	}
	if err != nil {
		if res == nil {
			return nil, err
		}
		return rep, err
	}
	return rep, nil
}

// runServer runs the measuring process in the server namespace and returns its results.
func runServer(ctx context.Context, l *lab, cfg childConfig, cpuprofile string, log io.Writer) (*childResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.server, self)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if cpuprofile != "" {
		abs, err := filepath.Abs(cpuprofile)
		if err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, profileEnv+"="+abs)
	}
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()
	var res *childResult
	if out.Len() > 0 {
		res = new(childResult)
		if err := json.Unmarshal(out.Bytes(), res); err != nil {
			return nil, errors.Join(runErr, fmt.Errorf("server results: %w", err))
		}
	}
	if runErr != nil {
		return res, fmt.Errorf("measuring process: %w", runErr)
	}
	if res == nil {
		return nil, errors.New("measuring process reported nothing")
	}
	return res, nil
}

// Report is a run's results.
type Report struct {
	Opts               Options
	ID                 string
	Machine            string
	Start, End         time.Time
	LoadStart, LoadEnd string
	Result             childResult
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianDur(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(median(f))
}

func ms(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func perGiB(cpu float64, bytes int64) string {
	if bytes == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", cpu/(float64(bytes)/(1<<30)))
}

// Rows are the baseline then the tunnel rows.
func (r *Report) Rows() []rowResult {
	return append([]rowResult{r.Result.Baseline}, r.Result.Tunnels...)
}

// Ratio is a row's p50 throughput over the baseline's (NaN when either is missing).
func (r *Report) Ratio(row rowResult) float64 {
	b := median(r.Result.Baseline.MiBps)
	if b == 0 || len(row.MiBps) == 0 {
		return math.NaN()
	}
	return median(row.MiBps) / b
}

// Table renders the result table.
func (r *Report) Table() string {
	var b strings.Builder
	b.WriteString("| path | download p50 | runs (MiB/s, round order) | ratio vs veth | set-up p50 | until first byte p50 | CPU s/GiB: server · lab · curl |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---|\n")
	for i, row := range r.Rows() {
		name := row.Name
		if i > 0 {
			name = "`" + row.Name + "`"
		}
		switch {
		case row.Err != "":
			fmt.Fprintf(&b, "| %s | error | see below | — | %s | %s | — |\n", name, ms(medianDur(row.Setup)), ms(medianDur(row.FirstByte)))
			continue
		case row.Unsupported != "":
			fmt.Fprintf(&b, "| %s | not measured | Manager.Attach: tunnel type unsupported | — | — | — | — |\n", name)
			continue
		}
		runs := make([]string, len(row.MiBps))
		for j, v := range row.MiBps {
			runs[j] = fmt.Sprintf("%.0f", v)
		}
		ratio := "1.00× (baseline)"
		if i > 0 {
			ratio = fmt.Sprintf("%.2f×", r.Ratio(row))
		}
		fmt.Fprintf(&b, "| %s | %.0f MiB/s | %s | %s | %s | %s | %s · %s · %s |\n",
			name, median(row.MiBps), strings.Join(runs, " · "), ratio,
			ms(medianDur(row.Setup)), ms(medianDur(row.FirstByte)),
			perGiB(row.CPUServer, row.Bytes), perGiB(row.CPULab, row.Bytes), perGiB(row.CPUClient, row.Bytes))
	}
	return b.String()
}

// Markdown is the whole report: header, table, notes.
func (r *Report) Markdown() string {
	o := r.Opts
	var b strings.Builder
	b.WriteString("# Egress tunnel benchmark: download inside a container, each tunnel vs a plain veth\n\n")
	machine := r.Machine
	if machine == "" {
		machine = sysinfo.Cores()
	}
	boxes := "`ip netns exec NS sleep` (a process in network and mount namespaces of its own)"
	if o.Docker {
		boxes = "Docker containers of " + o.Image + " with `--network none`"
	}
	run := fmt.Sprintf("go run ./bench/tunnel -mib %d -rounds %d -attaches %d", o.MiB, o.Rounds, o.Attaches)
	if o.Docker {
		run += " -docker"
	}
	if len(o.Kinds) != len(kinds) {
		run += " -kinds " + strings.Join(o.Kinds, ",")
	}
	fmt.Fprintf(&b, "Date: %s  \nMachine: %s, Linux %s, %s %s/%s, GOMAXPROCS=%d  \nLoad average: %s at the start, %s at the end (%s)  \nRun: `%s`  \nBoxes: %s\n\n",
		r.Start.UTC().Format("2006-01-02 15:04 MST"), machine, sysinfo.Kernel(), goruntime.Version(), goruntime.GOOS, goruntime.GOARCH,
		goruntime.GOMAXPROCS(0), r.LoadStart, r.LoadEnd, r.End.Sub(r.Start).Round(time.Second), run, boxes)
	b.WriteString(r.Table())
	b.WriteString("\n")
	for _, row := range r.Rows() {
		switch {
		case row.Err != "":
			fmt.Fprintf(&b, "- **%s: error**: %s\n", row.Name, row.Err)
		case row.Unsupported != "":
			fmt.Fprintf(&b, "- **%s** (%s): not measured, `Manager.Attach` refuses it: %s\n", row.Name, row.Detail, row.Unsupported)
		default:
			fmt.Fprintf(&b, "- %s: %s.", row.Name, row.Detail)
			if row.DialerMiBps > 0 {
				fmt.Fprintf(&b, " The lab's proxy server through `outbound.Dialer` from the server namespace (Go client, no container, one run): %.0f MiB/s.", row.DialerMiBps)
			}
			if row.Name != r.Result.Baseline.Name && len(row.MiBps) == len(r.Result.Baseline.MiBps) {
				var pr []string
				for j := range row.MiBps {
					pr = append(pr, fmt.Sprintf("%.2f", row.MiBps[j]/r.Result.Baseline.MiBps[j]))
				}
				fmt.Fprintf(&b, " Ratio per round: %s.", strings.Join(pr, ", "))
			}
			b.WriteString("\n")
		}
		if row.Unsupported != "" && row.DialerMiBps > 0 {
			fmt.Fprintf(&b, "  The lab's server works: through `outbound.Dialer` from the server namespace (Go client, no container, one run) %.0f MiB/s.\n", row.DialerMiBps)
		}
	}
	fmt.Fprintf(&b, `
How to read it:

- **download**: %d MiB over HTTP from a server in the "internet" namespace, fetched by curl run
  in the box's network namespace (`+"`nsenter -n`"+`), MiB/s = bytes ÷ curl's total time. Every row
  runs once per round (%d rounds) after one unmeasured warm-up of %d MiB; the order rotates each
  round. **ratio** = the row's p50 ÷ the veth's p50.
- **set-up**: for the veth, creating the pair into the box, addresses, links up, default
  route (netlink) and until both ends report operstate up; for a tunnel,
  `+"`tunnel.Manager.Attach`"+` (TUN in the box, device, routes, resolv.conf). **until first
  byte**: from the start of the set-up until the first byte of a small GET from inside the
  box (for WireGuard it includes the handshake). Median of %d, after one
  unmeasured warm-up, the same box each time (detached, or veth deleted, in between).
- **CPU s/GiB** (user + system seconds per GiB downloaded, summed over the measured runs):
  *server* is the process holding tunnel.Manager (the tunnel's end on our side: wireguard-go,
  or the proxy path); *lab* is the process playing the provider's end (wireguard-go peer or proxy
  server) and the HTTP server; *curl* is the client. Kernel work in softirq (veth, NAT, TCP) is
  in none of them.
- **WireGuard** row: `+"`Manager.Attach`"+` puts a wireguard-go TUN (MTU %d) in the box; the
  server decrypts, the lab's wireguard-go peer encrypts. **Proxy** rows: the box gets a TUN (MTU
  %d) whose packets the server's user-space stack (gVisor netstack) ends, each TCP connection
  re-dialled through tunnel/outbound to the lab's proxy server (tunnel/outbound `+"`Serve`"+`).
- Every party shares the machine's cores: the provider's end of each tunnel, which in
  production runs elsewhere, competes here with ours, and the HTTP server and curl with both.
  On a small machine the tunnel rows are CPU-bound, so their ratio is pessimistic.
`, o.MiB, o.Rounds, max(o.MiB/8, 1), o.Attaches, tunnel.DefaultMTU, tunnel.ProxyMTU)
	return b.String()
}
