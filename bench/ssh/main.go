// Command ssh benchmarks the SSH gateway against the Docker exec API it bridges to, on the
// local engine with the offline test image, in one run:
//
//   - session set-up: `ssh -p PORT USER@127.0.0.1 true` (OpenSSH client, key auth) against
//     an API exec of `true` (create + start + inspect), median over -n runs; the SSH
//     handshake alone is measured too (OpenSSH asking for a subsystem the gateway refuses:
//     key exchange, authentication and a channel, but no container work). Target: set-up
//     <= 1.5 x direct + handshake.
//   - throughput: `head -c 1G /dev/zero` streamed out of the container through the gateway,
//     read by the OpenSSH client into /dev/null (over a master connection opened first) and
//     by the x/crypto/ssh client in this process, against the same through the exec API read
//     by the Docker client in this process; -runs rounds of one sample each way, and the
//     CPU seconds per GiB of the engine, the gateway and each client. Target: OpenSSH >= 90%
//     of direct (median of the rounds' ratios); the x/crypto figure is for comparison.
//   - memory per idle session: the gateway process's Go heap (after GC) and RSS growth with
//     -idle concurrent idle interactive sessions (pty + login shell), divided by -idle.
//
// The gateway runs in a child process (this binary re-executed) so that the memory
// measured is the server's alone. Usage: go run ./bench/ssh [-n 20] [-bytes 1073741824]
// [-runs 3] [-idle 200] [-only setup|throughput|memory] [-ways xcrypto,openssh,direct]
// [-out bench/ssh/RESULTS.md]. CCP_SSHBENCH_CPUPROFILE and CCP_SSHBENCH_CLIENT_CPUPROFILE
// name files for CPU profiles of the gateway process and of this process.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/bench/internal/sysinfo"
	ccpruntime "github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
)

// Config sizes one benchmark run.
type Config struct {
	N           int   // set-up samples
	StreamBytes int64 // bytes streamed per throughput sample
	StreamRuns  int   // throughput samples per side (median)
	Idle        int   // concurrent idle sessions
	// Only, if set, runs one part: "setup", "throughput" or "memory" (the others report
	// zeros and the table says so).
	Only string
	// Ways, if set, limits the throughput samples to these of "xcrypto", "openssh" and
	// "direct" (comma-separated), e.g. to profile one of them.
	Ways string
}

// Results of a run.
type Results struct {
	Date, Machine                        string
	Cfg                                  Config
	SetupGateway, SetupDirect, Handshake time.Duration // medians
	HandshakeGo                          time.Duration // x/crypto client handshake + auth, median
	// MB/s (1e6 bytes), medians: through the gateway read by the x/crypto client in this
	// process and by the OpenSSH client, and straight from the exec API.
	ThroughputGateway, ThroughputOpenSSH, ThroughputDirect float64
	// CPU seconds per GiB streamed (averaged over the samples): the engine (dockerd,
	// containerd, shims), the gateway process, and the client (this process; plus the
	// ssh process for OpenSSH).
	CPUGateway, CPUOpenSSH, CPUDirect cpuShare
	// Medians over the rounds of (gateway sample / direct sample of the same round): the
	// ratios judged, less exposed to load that comes and goes than a ratio of medians.
	RatioOpenSSH, RatioGateway float64
	// The samples behind the medians, in MB/s, in the order taken.
	SamplesGateway, SamplesOpenSSH, SamplesDirect []float64
	// The cipher the OpenSSH client negotiated with the gateway.
	CipherOpenSSH                              string
	HeapPerSession, RSSPerSession              float64 // bytes
	HeapBefore, HeapAfter, RSSBefore, RSSAfter uint64
	GoroutinesBefore, GoroutinesAfter          int
}

const childEnv = "CCP_SSHBENCH_CHILD"

func main() {
	if os.Getenv(childEnv) == "1" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	var cfg Config
	flag.IntVar(&cfg.N, "n", 20, "session set-up samples (median)")
	flag.Int64Var(&cfg.StreamBytes, "bytes", 1<<30, "bytes streamed per throughput sample")
	flag.IntVar(&cfg.StreamRuns, "runs", 3, "throughput samples per side (median)")
	flag.IntVar(&cfg.Idle, "idle", 200, "concurrent idle sessions for the memory measurement")
	flag.StringVar(&cfg.Only, "only", "", "run one part only: setup, throughput or memory")
	flag.StringVar(&cfg.Ways, "ways", "", "throughput samples to take: xcrypto,openssh,direct (default all)")
	out := flag.String("out", "bench/ssh/RESULTS.md", "where to save the results table (empty: do not save)")
	flag.Parse()

	res, err := Run(context.Background(), cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	table := res.Markdown()
	fmt.Print(table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "saved", *out)
	}
	if !res.Pass() {
		os.Exit(2)
	}
}

// Pass reports whether the targets with a threshold were met.
func (r *Results) Pass() bool { return r.setupOK() && r.throughputOK() }

func (r *Results) ran(part string) bool { return r.Cfg.Only == "" || r.Cfg.Only == part }

func (r *Results) setupBudget() time.Duration {
	return time.Duration(1.5*float64(r.SetupDirect)) + r.Handshake
}
func (r *Results) setupOK() bool { return !r.ran("setup") || r.SetupGateway <= r.setupBudget() }

// throughputOK: the OpenSSH client reaches 90% of direct (the x/crypto figure is shown
// for comparison: see the notes on its own CPU).
func (r *Results) throughputOK() bool { return !r.ran("throughput") || r.RatioOpenSSH >= 0.9 }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Markdown renders the results table.
func (r *Results) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# SSH gateway benchmark\n\n")
	fmt.Fprintf(&b, "Date: %s  \nMachine: %s  \n", r.Date, r.Machine)
	only := ""
	if r.Cfg.Only != "" {
		only = " -only " + r.Cfg.Only
	}
	fmt.Fprintf(&b, "Run: `go run ./bench/ssh -n %d -bytes %d -runs %d -idle %d%s`\n\n", r.Cfg.N, r.Cfg.StreamBytes, r.Cfg.StreamRuns, r.Cfg.Idle, only)
	fmt.Fprintf(&b, "| Measure | Gateway | Direct (Docker exec API) | Ratio | Target | Result |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|\n")
	if r.ran("setup") {
		fmt.Fprintf(&b, "| Session set-up, `ssh -p PORT USER@127.0.0.1 true` vs exec `true` (median of %d) | %s | %s | %.2fx direct; %.2f of budget %s | <= 1.5x direct + handshake | %s |\n",
			r.Cfg.N, ms(r.SetupGateway), ms(r.SetupDirect), float64(r.SetupGateway)/float64(r.SetupDirect),
			float64(r.SetupGateway)/float64(r.setupBudget()), ms(r.setupBudget()), verdict(r.setupOK()))
		fmt.Fprintf(&b, "| SSH handshake alone, OpenSSH (kex + key auth + channel, no container work) | %s | - | - | (part of the budget) | - |\n", ms(r.Handshake))
		fmt.Fprintf(&b, "| SSH handshake alone, x/crypto client (kex + key auth) | %s | - | - | - | - |\n", ms(r.HandshakeGo))
	}
	if r.ran("throughput") {
		size := sizeStr(r.Cfg.StreamBytes)
		fmt.Fprintf(&b, "| Throughput, %s of `head -c` out of the container, OpenSSH client (%s) to /dev/null (medians of %d rounds; ratio: median of the rounds' ratios) | %.0f MB/s | %.0f MB/s | %.0f%% | >= 90%% of direct | %s |\n",
			size, r.CipherOpenSSH, r.Cfg.StreamRuns, r.ThroughputOpenSSH, r.ThroughputDirect, 100*r.RatioOpenSSH, verdict(r.RatioOpenSSH >= 0.9))
		fmt.Fprintf(&b, "| Throughput, the same read by the x/crypto client in the bench process (for comparison) | %.0f MB/s | %.0f MB/s | %.0f%% | - | - |\n",
			r.ThroughputGateway, r.ThroughputDirect, 100*r.RatioGateway)
		fmt.Fprintf(&b, "| CPU s per GiB, OpenSSH client: engine / gateway / client (ssh) = total | %s | %s | - | - | - |\n", r.CPUOpenSSH, r.CPUDirect)
		fmt.Fprintf(&b, "| CPU s per GiB, x/crypto client: engine / gateway / client (bench process) = total | %s | %s | - | - | - |\n", r.CPUGateway, r.CPUDirect)
	}
	if r.ran("memory") {
		fmt.Fprintf(&b, "| Memory per idle session, Go heap after GC (%d pty shells) | %.1f KiB | - | - | none given | - |\n", r.Cfg.Idle, r.HeapPerSession/1024)
		fmt.Fprintf(&b, "| Memory per idle session, process RSS | %.1f KiB | - | - | none given | - |\n", r.RSSPerSession/1024)
		fmt.Fprintf(&b, "\nGateway process: heap %s -> %s, RSS %s -> %s, goroutines %d -> %d.\n",
			sizeStr(int64(r.HeapBefore)), sizeStr(int64(r.HeapAfter)), sizeStr(int64(r.RSSBefore)), sizeStr(int64(r.RSSAfter)), r.GoroutinesBefore, r.GoroutinesAfter)
	}
	if r.ran("throughput") {
		fmt.Fprintf(&b, "\nThroughput samples (MB/s, round by round; each round takes one sample each way, starting with a different way each round): OpenSSH %s; x/crypto %s; direct %s.\n",
			samples(r.SamplesOpenSSH), samples(r.SamplesGateway), samples(r.SamplesDirect))
		if o, d := r.CPUOpenSSH.total(), r.CPUDirect.total(); o > 0 && d > 0 {
			fmt.Fprintf(&b, "\nCPU per GiB, all parties: gateway path %.1f s (OpenSSH client), %.1f s (x/crypto client); direct %.1f s. "+
				"With the machine's cores the bottleneck, throughput follows 1/CPU: the ratio is bounded near %.0f%% (OpenSSH) and %.0f%% (x/crypto).\n",
				o, r.CPUGateway.total(), d, 100*d/o, 100*d/r.CPUGateway.total())
		}
	}
	fmt.Fprintf(&b, "\nOverall: %s\n", verdict(r.Pass()))
	fmt.Fprintf(&b, "\nNotes:\n\n"+
		"- Set-up samples are interleaved. Throughput runs in rounds of one sample each way (x/crypto, OpenSSH, direct), "+
		"each round starting with a different way; a throughput figure is the median of its samples, a ratio the median "+
		"of the rounds' ratios (samples taken seconds apart see the same background load). The gateway runs in a child "+
		"process, the x/crypto and Docker clients in the bench process, the OpenSSH client in its own processes (a master "+
		"connection opened before the samples, like the x/crypto client's, so a sample is the stream alone).\n"+
		"- Session set-up through the gateway is: OpenSSH process start, key exchange, key authentication (key lookup, "+
		"audit write), session re-check, host lookup, engine inspect, exec create/start/inspect, audit write. "+
		"Direct is exec create + start (attached) + inspect of `true` on a known container.\n"+
		"- Fairness: every path ends in a client on the same machine that only discards the bytes, and its CPU is counted: "+
		"the Docker Go client demultiplexing the exec stream (direct), OpenSSH decrypting into /dev/null, or the x/crypto "+
		"client decrypting in the bench process. The x/crypto client is the costliest of the three (a goroutine hand-off "+
		"per packet, a window adjustment every 96 KiB, two reads per packet); OpenSSH is what users run. The gateway path "+
		"has one hop more than direct (engine -> gateway -> client instead of engine -> client) and pays for encryption "+
		"and decryption; with every core busy those costs come out of the engine's share.\n"+
		"- Engine CPU adds up every dockerd, containerd and containerd-shim process on the machine, other tenants' "+
		"containers included. CPU seconds are read from /proc and grow when the machine is shared (see the load "+
		"average): compare figures of one run, not across runs.\n")
	return b.String()
}

func samples(fs []float64) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%.0f", f))
	}
	return strings.Join(parts, " ")
}

func sizeStr(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
}

// childInfo is what the gateway process reports once ready.
type childInfo struct {
	Addr        string `json:"addr"`
	User        string `json:"user"`
	KeyFile     string `json:"key_file"`
	HostID      string `json:"host_id"`
	ContainerID string `json:"container_id"`
	Pid         int    `json:"pid"`
}

// memInfo is the gateway process's memory after a GC.
type memInfo struct {
	HeapAlloc  uint64 `json:"heap_alloc"`
	StackInuse uint64 `json:"stack_inuse"`
	RSS        uint64 `json:"rss"`
	Goroutines int    `json:"goroutines"`
}

// child is the running gateway process.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	info childInfo
}

func startChild(ctx context.Context, cfg Config, log io.Writer) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The child branches on childEnv before anything else (main, or TestMain in tests).
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), childEnv+"=1", "CCP_SSHBENCH_MAXSESS="+strconv.Itoa(cfg.Idle+20))
	cmd.Stderr = log
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("gateway process did not start: %v", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if !ok {
		c.stop()
		return nil, fmt.Errorf("gateway process: %s", line)
	}
	if err := json.Unmarshal([]byte(rest), &c.info); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *child) mem() (memInfo, error) {
	var m memInfo
	if _, err := io.WriteString(c.in, "mem\n"); err != nil {
		return m, err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return m, err
	}
	err = json.Unmarshal([]byte(line), &m)
	return m, err
}

// stop asks the child to clean up (it removes its host) and waits for it.
func (c *child) stop() {
	_, _ = io.WriteString(c.in, "quit\n")
	c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = c.cmd.Process.Kill()
		<-done
	}
	// Should the process have failed to remove its host, remove what is left.
	if c.info.ContainerID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	if err := cli.ContainerRemove(ctx, c.info.ContainerID, container.RemoveOptions{Force: true}); err == nil {
		fmt.Fprintln(os.Stderr, "bench: removed the benchmark's container left behind")
	}
	_ = cli.VolumeRemove(ctx, ccpruntime.VolumeName(c.info.HostID), true)
}

// Run performs the whole benchmark; progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Results, error) {
	if cfg.N <= 0 {
		cfg.N = 20
	}
	if cfg.StreamBytes <= 0 {
		cfg.StreamBytes = 1 << 30
	}
	if cfg.StreamRuns <= 0 {
		cfg.StreamRuns = 3
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 200
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return nil, fmt.Errorf("the OpenSSH client is required (apt-get install openssh-client): %w", err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	defer cli.Close()

	res := &Results{Cfg: cfg, Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine: machine(ctx, cli)}
	fmt.Fprintln(log, "starting the gateway process (service, user, host)...")
	c, err := startChild(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	info := c.info
	keyPEM, err := os.ReadFile(info.KeyFile)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(info.Addr)
	sshArgs := func(extra ...string) []string {
		return append([]string{"-p", port, "-i", info.KeyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ControlPath=none",
			info.User + "@127.0.0.1"}, extra...)
	}
	runSSH := func(extra ...string) (time.Duration, []byte, error) {
		cmd := exec.CommandContext(ctx, sshBin, sshArgs(extra...)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		return time.Since(start), out, err
	}
	// Warm up both paths (first exec in a container, first connection).
	if _, out, err := runSSH("true"); err != nil {
		return nil, fmt.Errorf("ssh true through the gateway: %v: %s", err, out)
	}
	if _, err := directExec(ctx, cli, info.ContainerID, []string{"true"}, nil); err != nil {
		return nil, err
	}

	if res.ran("setup") {
		if err := measureSetup(ctx, cfg, res, log, cli, info, signer, runSSH); err != nil {
			return nil, err
		}
	}
	if res.ran("throughput") {
		if err := measureThroughput(ctx, cfg, res, log, cli, c, signer, sshBin, sshArgs); err != nil {
			return nil, err
		}
	}
	if res.ran("memory") {
		if err := measureMemory(cfg, res, log, c, signer); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// measureSetup: session set-up, interleaved so background load hits both alike.
func measureSetup(ctx context.Context, cfg Config, res *Results, log io.Writer, cli *client.Client, info childInfo,
	signer gossh.Signer, runSSH func(extra ...string) (time.Duration, []byte, error)) error {
	fmt.Fprintf(log, "session set-up: %d samples each...\n", cfg.N)
	var gw, direct, hs, hsGo []time.Duration
	for i := 0; i < cfg.N; i++ {
		d, out, err := runSSH("true")
		if err != nil {
			return fmt.Errorf("ssh true: %v: %s", err, out)
		}
		gw = append(gw, d)
		start := time.Now()
		if _, err := directExec(ctx, cli, info.ContainerID, []string{"true"}, nil); err != nil {
			return err
		}
		direct = append(direct, time.Since(start))
		// The handshake alone: the gateway refuses an unknown subsystem after kex, auth and
		// the channel open, before any container work.
		d, out, _ = runSSH("-s", "ccp-bench-none")
		if !bytes.Contains(out, []byte("subsystem request failed")) {
			return fmt.Errorf("handshake probe: unexpected answer %q", out)
		}
		hs = append(hs, d)
		start = time.Now()
		conn, err := dialGo(info.Addr, info.User, signer)
		if err != nil {
			return err
		}
		hsGo = append(hsGo, time.Since(start))
		conn.Close()
	}
	res.SetupGateway, res.SetupDirect, res.Handshake, res.HandshakeGo = median(gw), median(direct), median(hs), median(hsGo)
	return nil
}

// measureThroughput streams StreamBytes out of the container StreamRuns times each way,
// interleaved: through the gateway read by the x/crypto client in this process, through
// the gateway read by the OpenSSH client (writing to /dev/null), and through the exec API
// read by the Docker client in this process.
func measureThroughput(ctx context.Context, cfg Config, res *Results, log io.Writer, cli *client.Client, c *child,
	signer gossh.Signer, sshBin string, sshArgs func(extra ...string) []string) error {
	fmt.Fprintf(log, "throughput: %s x %d each way...\n", sizeStr(cfg.StreamBytes), cfg.StreamRuns)
	info := c.info
	conn, err := dialGo(info.Addr, info.User, signer)
	if err != nil {
		return err
	}
	defer conn.Close()
	res.CipherOpenSSH = opensshCipher(ctx, sshBin, sshArgs)
	if path := os.Getenv("CCP_SSHBENCH_CLIENT_CPUPROFILE"); path != "" { // profile this process
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()
	// OpenSSH runs its streams over one master connection, like the x/crypto client, so a
	// sample is the stream alone (no process start, key exchange or authentication); the
	// master decrypts and writes straight to the /dev/null the sample's ssh passed it.
	ctlDir, err := os.MkdirTemp("", "ccp-sshbench-ctl-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctlDir)
	ctl := ctlDir + "/ctl"
	muxArgs := func(master bool, extra ...string) []string {
		args := sshArgs(extra...)
		for i := range args {
			switch args[i] {
			case "ControlMaster=no":
				if master {
					args[i] = "ControlMaster=yes"
				}
			case "ControlPath=none":
				args[i] = "ControlPath=" + ctl
			}
		}
		return args
	}
	master := exec.CommandContext(ctx, sshBin, muxArgs(true, "-N")...)
	master.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	if err := master.Start(); err != nil {
		return err
	}
	defer func() { _ = master.Process.Kill(); _ = master.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		check := exec.CommandContext(ctx, sshBin, append(muxArgs(false), "-O", "check")...)
		if check.Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the OpenSSH master connection did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	headCmd := []string{"head", "-c", strconv.FormatInt(cfg.StreamBytes, 10), "/dev/zero"}
	gib := float64(cfg.StreamBytes) * float64(cfg.StreamRuns) / (1 << 30) // all samples: add averages
	pid := c.cmd.Process.Pid
	var tgw, tossh, tdirect []float64
	way := func(w string) bool { return cfg.Ways == "" || strings.Contains(","+cfg.Ways+",", ","+w+",") }
	xcrypto := func() error { // the x/crypto client, over its one connection
		cpu0, start := sampleCPU(pid), time.Now()
		n, err := gatewayStream(conn, strings.Join(headCmd, " "))
		if err != nil {
			return err
		}
		tgw = append(tgw, mbps(n, time.Since(start), cfg.StreamBytes))
		res.CPUGateway.add(sampleCPU(pid).sub(cpu0), gib)
		return nil
	}
	openssh := func() error { // its CPU is the master's and the sample's ssh process's
		cpu0, start := sampleCPU(pid), time.Now()
		m0 := sysinfo.ProcCPU(master.Process.Pid)
		cmd := exec.CommandContext(ctx, sshBin, muxArgs(false, strings.Join(headCmd, " "))...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		cmd.Stdout = devNull
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("ssh %s: %v: %s", strings.Join(headCmd, " "), err, stderr.Bytes())
		}
		tossh = append(tossh, float64(cfg.StreamBytes)/1e6/time.Since(start).Seconds())
		d := sampleCPU(pid).sub(cpu0)
		d.client += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() + sysinfo.ProcCPU(master.Process.Pid) - m0
		res.CPUOpenSSH.add(d, gib)
		return nil
	}
	direct := func() error {
		cpu0, start := sampleCPU(pid), time.Now()
		n, err := directExec(ctx, cli, info.ContainerID, headCmd, io.Discard)
		if err != nil {
			return err
		}
		tdirect = append(tdirect, mbps(n, time.Since(start), cfg.StreamBytes))
		res.CPUDirect.add(sampleCPU(pid).sub(cpu0), gib)
		return nil
	}
	type sampler struct {
		name string
		run  func() error
	}
	ways := []sampler{{"xcrypto", xcrypto}, {"openssh", openssh}, {"direct", direct}}
	for i := 0; i < cfg.StreamRuns; i++ {
		// A round takes one sample each way, starting with a different way each round.
		for k := range ways {
			w := ways[(i+k)%len(ways)]
			if !way(w.name) {
				continue
			}
			if err := w.run(); err != nil {
				return err
			}
		}
	}
	res.RatioOpenSSH, res.RatioGateway = medianRatio(tossh, tdirect), medianRatio(tgw, tdirect)
	res.ThroughputGateway, res.ThroughputOpenSSH, res.ThroughputDirect = medianF(tgw), medianF(tossh), medianF(tdirect)
	res.SamplesGateway, res.SamplesOpenSSH, res.SamplesDirect = tgw, tossh, tdirect
	return nil
}

// opensshCipher asks the OpenSSH client which cipher it negotiates with the gateway (its
// debug output names it).
func opensshCipher(ctx context.Context, sshBin string, sshArgs func(extra ...string) []string) string {
	args := sshArgs("true")
	for i, a := range args {
		if a == "LogLevel=ERROR" {
			args[i] = "LogLevel=DEBUG"
		}
	}
	cmd := exec.CommandContext(ctx, sshBin, args...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	out, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		// "debug1: kex: server->client cipher: aes128-gcm@openssh.com MAC: <implicit> compression: none"
		if _, rest, ok := strings.Cut(line, "kex: server->client cipher: "); ok {
			return strings.Fields(rest)[0]
		}
	}
	return "?"
}

// measureMemory: memory per idle session.
func measureMemory(cfg Config, res *Results, log io.Writer, c *child, signer gossh.Signer) error {
	info := c.info
	fmt.Fprintf(log, "memory: %d idle sessions...\n", cfg.Idle)
	before, err := c.mem()
	if err != nil {
		return err
	}
	sessions, closeAll, err := openIdle(info.Addr, info.User, signer, cfg.Idle)
	defer closeAll()
	if err != nil {
		return err
	}
	after, err := c.mem()
	if err != nil {
		return err
	}
	res.HeapBefore, res.HeapAfter = before.HeapAlloc+before.StackInuse, after.HeapAlloc+after.StackInuse
	res.RSSBefore, res.RSSAfter = before.RSS, after.RSS
	res.GoroutinesBefore, res.GoroutinesAfter = before.Goroutines, after.Goroutines
	res.HeapPerSession = (float64(res.HeapAfter) - float64(res.HeapBefore)) / float64(sessions)
	res.RSSPerSession = (float64(res.RSSAfter) - float64(res.RSSBefore)) / float64(sessions)
	return nil
}

func machine(ctx context.Context, cli *client.Client) string {
	m := fmt.Sprintf("%d cores (%s/%s), %s", goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version())
	if v, err := cli.ServerVersion(ctx); err == nil {
		m += ", Docker " + v.Version + " (API " + v.APIVersion + ")"
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m += ", " + strings.Fields(string(out))[0]
	}
	if la := sysinfo.LoadAverage(); la != "unknown" {
		m += ", load average at start " + la
	}
	return m
}

func dialGo(addr, user string, signer gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: user, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
	})
}

// directExec runs cmd through the exec API (create, start attached, inspect) as the
// workspace user, like the gateway does, copying stdout to out (nil: discard), and
// returns the bytes of stdout.
func directExec(ctx context.Context, cli *client.Client, containerID string, cmd []string, out io.Writer) (int64, error) {
	created, err := cli.ContainerExecCreate(ctx, containerID, container.ExecOptions{
		User: "1000:1000", Cmd: cmd, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return 0, err
	}
	resp, err := cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return 0, err
	}
	if out == nil {
		out = io.Discard
	}
	cw := &countWriter{w: out}
	_, err = stdcopy.StdCopy(cw, io.Discard, resp.Reader)
	resp.Close()
	if err != nil {
		return cw.n, err
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ins, err := cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return cw.n, err
		}
		if !ins.Running {
			if ins.ExitCode != 0 {
				return cw.n, fmt.Errorf("%v exited %d", cmd, ins.ExitCode)
			}
			return cw.n, nil
		}
		time.Sleep(delay)
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// gatewayStream runs cmd through the gateway and discards its stdout, returning its size.
func gatewayStream(conn *gossh.Client, cmd string) (int64, error) {
	s, err := conn.NewSession()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	out, err := s.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := s.Start(cmd); err != nil {
		return 0, err
	}
	// Large reads: the x/crypto client sends a window adjustment per read (io.Discard's
	// ReadFrom would read 8 KiB at a time).
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, out, make([]byte, 1<<20))
	if err != nil {
		return n, err
	}
	return n, s.Wait()
}

func mbps(n int64, d time.Duration, want int64) float64 {
	if n != want {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

// openIdle opens n connections, each with an interactive pty shell that has printed a
// marker (so its container process is up), and leaves them idle.
func openIdle(addr, user string, signer gossh.Signer, n int) (int, func(), error) {
	var mu sync.Mutex
	var conns []*gossh.Client
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	open := func() error {
		c, err := dialGo(addr, user, signer)
		if err != nil {
			return err
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		s, err := c.NewSession()
		if err != nil {
			return err
		}
		if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
			return err
		}
		in, _ := s.StdinPipe()
		out, _ := s.StdoutPipe()
		if err := s.Shell(); err != nil {
			return err
		}
		if _, err := io.WriteString(in, "echo idle-$((40+2))\n"); err != nil {
			return err
		}
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 1024)
		deadline := time.Now().Add(2 * time.Minute)
		for !bytes.Contains(buf, []byte("idle-42")) {
			if time.Now().After(deadline) {
				return errors.New("idle session did not come up")
			}
			k, err := out.Read(tmp)
			if err != nil {
				return err
			}
			buf = append(buf, tmp[:k]...)
		}
		// Keep draining (nothing more is expected) so flow control never stalls.
		go func() { _, _ = io.Copy(io.Discard, out) }()
		return nil
	}
	// A few at a time: the engine is the bottleneck when starting execs.
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- open()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, closeAll, fmt.Errorf("opening idle sessions: %w", err)
		}
	}
	return n, closeAll, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// medianRatio is the median of a[i]/b[i].
func medianRatio(a, b []float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return medianF(rs)
}

func medianF(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// cpuShare is CPU seconds per GiB streamed, by party.
type cpuShare struct{ Engine, Gateway, Client float64 }

func (c *cpuShare) add(d cpuSample, gib float64) {
	c.Engine += d.engine / gib
	c.Gateway += d.gateway / gib
	c.Client += d.client / gib
}

func (c cpuShare) total() float64 { return c.Engine + c.Gateway + c.Client }

func (c cpuShare) String() string {
	return fmt.Sprintf("%.2f / %.2f / %.2f = %.2f s", c.Engine, c.Gateway, c.Client, c.total())
}

// cpuSample is cumulative CPU seconds (user + system) of the engine's processes (by pid),
// the gateway process and this process; a difference of two keeps only the engine's total.
type cpuSample struct {
	engine          float64
	enginePids      map[int]float64
	gateway, client float64
}

// sub is a - b. Engine processes are matched by pid: one that exited in between (another
// container's shim) does not make the engine's CPU go down; one that started counts whole.
func (a cpuSample) sub(b cpuSample) cpuSample {
	d := cpuSample{gateway: a.gateway - b.gateway, client: a.client - b.client}
	for pid, v := range a.enginePids {
		d.engine += v - b.enginePids[pid]
	}
	return d
}

// sampleCPU reads /proc (zeros where it cannot).
func sampleCPU(gatewayPid int) cpuSample {
	var s cpuSample
	s.gateway = sysinfo.ProcCPU(gatewayPid)
	s.client = sysinfo.ProcCPU(os.Getpid())
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2":
			if s.enginePids == nil {
				s.enginePids = map[int]float64{}
			}
			s.enginePids[pid] = sysinfo.ProcCPU(pid)
		}
	}
	return s
}
