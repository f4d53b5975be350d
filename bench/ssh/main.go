// Command ssh benchmarks the SSH gateway against the Docker exec API it bridges to, on the
// local engine with the offline test image, in one run:
//
//   - session set-up: `ssh -p PORT USER@127.0.0.1 true` (OpenSSH client, key auth) against
//     an API exec of `true` (create + start + inspect), median over -n runs; the SSH
//     handshake alone is measured too (OpenSSH asking for a subsystem the gateway refuses:
//     key exchange, authentication and a channel, but no container work). Target: set-up
//     <= 1.5 x direct + handshake.
//   - throughput: `head -c 1G /dev/zero` streamed out of the container through the gateway
//     (read with the x/crypto/ssh client) against the same through the exec API. Target:
//     >= 90% of direct.
//   - memory per idle session: the gateway process's Go heap (after GC) and RSS growth with
//     -idle concurrent idle interactive sessions (pty + login shell), divided by -idle.
//
// The gateway runs in a child process (this binary re-executed) so that the memory
// measured is the server's alone. Usage: go run ./bench/ssh [-n 20] [-bytes 1073741824]
// [-idle 200] [-out bench/ssh/RESULTS.md]
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	gossh "golang.org/x/crypto/ssh"

	ccpruntime "github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
)

// Config sizes one benchmark run.
type Config struct {
	N           int   // set-up samples
	StreamBytes int64 // bytes streamed per throughput sample
	StreamRuns  int   // throughput samples per side (median)
	Idle        int   // concurrent idle sessions
}

// Results of a run.
type Results struct {
	Date, Machine                        string
	Cfg                                  Config
	SetupGateway, SetupDirect, Handshake time.Duration // medians
	HandshakeGo                          time.Duration // x/crypto client handshake + auth, median
	ThroughputGateway, ThroughputDirect  float64       // MB/s (1e6 bytes), medians
	// CPU seconds per GiB streamed (summed over the samples): the engine (dockerd,
	// containerd, shims), the gateway process, and this process (the client).
	CPUGateway, CPUDirect                      cpuShare
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

func (r *Results) setupBudget() time.Duration {
	return time.Duration(1.5*float64(r.SetupDirect)) + r.Handshake
}
func (r *Results) setupOK() bool      { return r.SetupGateway <= r.setupBudget() }
func (r *Results) throughputOK() bool { return r.ThroughputGateway >= 0.9*r.ThroughputDirect }

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
	fmt.Fprintf(&b, "Run: `go run ./bench/ssh -n %d -bytes %d -runs %d -idle %d`\n\n", r.Cfg.N, r.Cfg.StreamBytes, r.Cfg.StreamRuns, r.Cfg.Idle)
	fmt.Fprintf(&b, "| Measure | Gateway | Direct (Docker exec API) | Ratio | Target | Result |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| Session set-up, `ssh -p PORT USER@127.0.0.1 true` vs exec `true` (median of %d) | %s | %s | %.2fx direct; %.2f of budget %s | <= 1.5x direct + handshake | %s |\n",
		r.Cfg.N, ms(r.SetupGateway), ms(r.SetupDirect), float64(r.SetupGateway)/float64(r.SetupDirect),
		float64(r.SetupGateway)/float64(r.setupBudget()), ms(r.setupBudget()), verdict(r.setupOK()))
	fmt.Fprintf(&b, "| SSH handshake alone, OpenSSH (kex + key auth + channel, no container work) | %s | - | - | (part of the budget) | - |\n", ms(r.Handshake))
	fmt.Fprintf(&b, "| SSH handshake alone, x/crypto client (kex + key auth) | %s | - | - | - | - |\n", ms(r.HandshakeGo))
	fmt.Fprintf(&b, "| Throughput, %s of `head -c` out of the container (median of %d) | %.0f MB/s | %.0f MB/s | %.0f%% | >= 90%% of direct | %s |\n",
		sizeStr(r.Cfg.StreamBytes), r.Cfg.StreamRuns, r.ThroughputGateway, r.ThroughputDirect, 100*r.ThroughputGateway/r.ThroughputDirect, verdict(r.throughputOK()))
	fmt.Fprintf(&b, "| CPU per GiB streamed: engine (dockerd, containerd, shims) / gateway process / client | %s | %s | - | - | - |\n", r.CPUGateway, r.CPUDirect)
	fmt.Fprintf(&b, "| Memory per idle session, Go heap after GC (%d pty shells) | %.1f KiB | - | - | none given | - |\n", r.Cfg.Idle, r.HeapPerSession/1024)
	fmt.Fprintf(&b, "| Memory per idle session, process RSS | %.1f KiB | - | - | none given | - |\n", r.RSSPerSession/1024)
	fmt.Fprintf(&b, "\nGateway process: heap %s -> %s, RSS %s -> %s, goroutines %d -> %d.\n",
		sizeStr(int64(r.HeapBefore)), sizeStr(int64(r.HeapAfter)), sizeStr(int64(r.RSSBefore)), sizeStr(int64(r.RSSAfter)), r.GoroutinesBefore, r.GoroutinesAfter)
	gwCPU := r.CPUGateway.Engine + r.CPUGateway.Gateway + r.CPUGateway.Client
	dCPU := r.CPUDirect.Engine + r.CPUDirect.Gateway + r.CPUDirect.Client
	if gwCPU > 0 && dCPU > 0 {
		fmt.Fprintf(&b, "CPU per GiB, all parties: gateway path %.1f s, direct %.1f s. When the machine's cores are the bottleneck, "+
			"the throughput ratio cannot exceed %.0f%% (direct CPU / gateway CPU).\n", gwCPU, dCPU, 100*dCPU/gwCPU)
	}
	fmt.Fprintf(&b, "Overall: %s\n", verdict(r.Pass()))
	fmt.Fprintf(&b, "\nNotes:\n\n"+
		"- Gateway and direct samples are interleaved; each figure is a median. The gateway runs in a child process, "+
		"the clients in this one.\n"+
		"- Session set-up through the gateway is: OpenSSH process start, key exchange, key authentication (key lookup, "+
		"audit write), session re-check, host lookup, engine inspect, exec create/start/inspect, audit write. "+
		"Direct is exec create + start (attached) + inspect of `true` on a known container.\n"+
		"- Engine CPU adds up every dockerd, containerd and containerd-shim process on the machine, other tenants' "+
		"containers included. On a shared machine (see the load average) the throughput ratio moves from run to run "+
		"and follows the CPU bound above: the gateway path pays for SSH encryption in the gateway and decryption in "+
		"the client on the same two cores the engine needs.\n")
	return b.String()
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

	// 1. Session set-up, interleaved so background load hits both alike.
	fmt.Fprintf(log, "session set-up: %d samples each...\n", cfg.N)
	var gw, direct, hs, hsGo []time.Duration
	for i := 0; i < cfg.N; i++ {
		d, out, err := runSSH("true")
		if err != nil {
			return nil, fmt.Errorf("ssh true: %v: %s", err, out)
		}
		gw = append(gw, d)
		start := time.Now()
		if _, err := directExec(ctx, cli, info.ContainerID, []string{"true"}, nil); err != nil {
			return nil, err
		}
		direct = append(direct, time.Since(start))
		// The handshake alone: the gateway refuses an unknown subsystem after kex, auth and
		// the channel open, before any container work.
		d, out, _ = runSSH("-s", "ccp-bench-none")
		if !bytes.Contains(out, []byte("subsystem request failed")) {
			return nil, fmt.Errorf("handshake probe: unexpected answer %q", out)
		}
		hs = append(hs, d)
		start = time.Now()
		conn, err := dialGo(info.Addr, info.User, signer)
		if err != nil {
			return nil, err
		}
		hsGo = append(hsGo, time.Since(start))
		conn.Close()
	}
	res.SetupGateway, res.SetupDirect, res.Handshake, res.HandshakeGo = median(gw), median(direct), median(hs), median(hsGo)

	// 2. Throughput.
	fmt.Fprintf(log, "throughput: %s x %d each...\n", sizeStr(cfg.StreamBytes), cfg.StreamRuns)
	conn, err := dialGo(info.Addr, info.User, signer)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	headCmd := []string{"head", "-c", strconv.FormatInt(cfg.StreamBytes, 10), "/dev/zero"}
	var tgw, tdirect []float64
	gib := float64(cfg.StreamBytes*int64(cfg.StreamRuns)) / (1 << 30)
	for i := 0; i < cfg.StreamRuns; i++ {
		cpu0 := sampleCPU(c.cmd.Process.Pid)
		start := time.Now()
		n, err := gatewayStream(conn, strings.Join(headCmd, " "))
		if err != nil {
			return nil, err
		}
		tgw = append(tgw, mbps(n, time.Since(start), cfg.StreamBytes))
		cpu1 := sampleCPU(c.cmd.Process.Pid)
		res.CPUGateway.add(cpu1.sub(cpu0), gib)
		start = time.Now()
		n, err = directExec(ctx, cli, info.ContainerID, headCmd, io.Discard)
		if err != nil {
			return nil, err
		}
		tdirect = append(tdirect, mbps(n, time.Since(start), cfg.StreamBytes))
		res.CPUDirect.add(sampleCPU(c.cmd.Process.Pid).sub(cpu1), gib)
	}
	res.ThroughputGateway, res.ThroughputDirect = medianF(tgw), medianF(tdirect)

	// 3. Memory per idle session.
	fmt.Fprintf(log, "memory: %d idle sessions...\n", cfg.Idle)
	before, err := c.mem()
	if err != nil {
		return nil, err
	}
	sessions, closeAll, err := openIdle(info.Addr, info.User, signer, cfg.Idle)
	defer closeAll()
	if err != nil {
		return nil, err
	}
	after, err := c.mem()
	if err != nil {
		return nil, err
	}
	res.HeapBefore, res.HeapAfter = before.HeapAlloc+before.StackInuse, after.HeapAlloc+after.StackInuse
	res.RSSBefore, res.RSSAfter = before.RSS, after.RSS
	res.GoroutinesBefore, res.GoroutinesAfter = before.Goroutines, after.Goroutines
	res.HeapPerSession = (float64(res.HeapAfter) - float64(res.HeapBefore)) / float64(sessions)
	res.RSSPerSession = (float64(res.RSSAfter) - float64(res.RSSBefore)) / float64(sessions)
	return res, nil
}

func machine(ctx context.Context, cli *client.Client) string {
	m := fmt.Sprintf("%d cores (%s/%s), %s", goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version())
	if v, err := cli.ServerVersion(ctx); err == nil {
		m += ", Docker " + v.Version + " (API " + v.APIVersion + ")"
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m += ", " + strings.Fields(string(out))[0]
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m += ", load average at start " + strings.Join(strings.Fields(string(b))[:3], " ")
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

func medianF(fs []float64) float64 {
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

func (c cpuShare) String() string {
	return fmt.Sprintf("%.2f / %.2f / %.2f s", c.Engine, c.Gateway, c.Client)
}

// cpuSample is cumulative CPU seconds (user + system) of the engine's processes, the
// gateway process and this process.
type cpuSample struct{ engine, gateway, client float64 }

func (a cpuSample) sub(b cpuSample) cpuSample {
	return cpuSample{a.engine - b.engine, a.gateway - b.gateway, a.client - b.client}
}

// sampleCPU reads /proc (zeros where it cannot).
func sampleCPU(gatewayPid int) cpuSample {
	var s cpuSample
	s.gateway = procCPU(gatewayPid)
	s.client = procCPU(os.Getpid())
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
			s.engine += procCPU(pid)
		}
	}
	return s
}

// procCPU returns the CPU seconds (utime + stime) of a process, from /proc/<pid>/stat.
func procCPU(pid int) float64 {
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
