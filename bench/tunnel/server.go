package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/bench/internal/sysinfo"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
)

// The measuring process ("server"): this binary re-executed by `ip netns exec cbts<id>`, so
// that the server's own namespace, where tunnel.Manager opens its WireGuard sockets and
// proxy connections, is one of the lab's. It holds the tunnel.Manager, drives curl inside
// the boxes and reports its measurements as JSON on stdout.

const (
	childEnv   = "CCP_TUNNELBENCH_CHILD"
	profileEnv = "CCP_TUNNELBENCH_CPUPROFILE"
)

// hostID is the host the tunnel box stands for.
const hostID = "bench-host"

type childConfig struct {
	Bytes     int64
	Rounds    int
	Attaches  int
	URL       string // GET URL?n=N answers N bytes
	SmallURL  string
	TunnelPid int // box the tunnels are attached to
	BasePid   int // box with the baseline veth
	LabPid    int // the lab process (provider ends and HTTP server), for its CPU time
	ProvNS    string
	Kinds     []kindSpec
}

type kindSpec struct {
	Name, Detail string
	Egress       app.EgressIP
}

// rowResult is one row's measurements.
type rowResult struct {
	Name, Detail string
	MiBps        []float64       // one per round, in round order
	Setup        []time.Duration // Manager.Attach (or the veth's set-up), after one warm-up
	FirstByte    []time.Duration // from the start of the set-up until a GET's first byte
	Bytes        int64           // downloaded in the measured runs
	// CPU seconds spent during the measured runs by: this process (the tunnel's server end),
	// the lab process (provider end and HTTP server), curl.
	CPUServer, CPULab, CPUClient float64
	// DialerMiBps is, for proxies, one download with a Go client through outbound.Dialer
	// straight from the server namespace: the protocol without the container's path.
	DialerMiBps float64
	Unsupported string // Manager.Attach refuses the tunnel type
	Err         string
}

type childResult struct {
	Baseline rowResult
	Tunnels  []rowResult
}

type child struct {
	cfg     childConfig
	log     io.Writer
	m       *tunnel.Manager
	tunNS   netns.NsHandle
	baseNS  netns.NsHandle
	provNS  netns.NsHandle
	hc, hp  *netlink.Handle // baseline box, provider
	current string          // kind attached to the tunnel box
}

func (c *child) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "tunnel-bench: server: "+format+"\n", args...)
}

// runChild is the server process's main.
func runChild(ctx context.Context, in io.Reader, out, log io.Writer) error {
	c := &child{log: log, tunNS: -1, baseNS: -1, provNS: -1}
	if err := json.NewDecoder(in).Decode(&c.cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer c.close()
	var err error
	if c.tunNS, err = netns.GetFromPid(c.cfg.TunnelPid); err != nil {
		return err
	}
	if c.baseNS, err = netns.GetFromPid(c.cfg.BasePid); err != nil {
		return err
	}
	if c.provNS, err = netns.GetFromPath(c.cfg.ProvNS); err != nil {
		return err
	}
	if c.hc, err = netlink.NewHandleAt(c.baseNS); err != nil {
		return err
	}
	if c.hp, err = netlink.NewHandleAt(c.provNS); err != nil {
		return err
	}
	c.m = tunnel.NewManager(tunnel.Config{})
	if path := os.Getenv(profileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := c.measure(ctx)
	if res != nil {
		if jerr := json.NewEncoder(out).Encode(res); jerr != nil {
			err = errors.Join(err, jerr)
		}
	}
	return err
}

func (c *child) close() {
	if c.m != nil {
		c.m.Close()
	}
	for _, h := range []*netlink.Handle{c.hc, c.hp} {
		if h != nil {
			h.Close()
		}
	}
	for _, ns := range []netns.NsHandle{c.tunNS, c.baseNS, c.provNS} {
		if ns.IsOpen() {
			ns.Close()
		}
	}
}

func (c *child) measure(ctx context.Context) (*childResult, error) {
	res := &childResult{Baseline: rowResult{Name: "veth (baseline)",
		Detail: "plain veth into the box, routed and SNATed by the provider namespace, MTU 1500"}}
	for _, k := range c.cfg.Kinds {
		res.Tunnels = append(res.Tunnels, rowResult{Name: k.Name, Detail: k.Detail})
	}

	// Set-up times: the baseline veth, then each tunnel; one warm-up each, not counted.
	c.logf("veth set-up x%d", c.cfg.Attaches+1)
	for i := 0; i <= c.cfg.Attaches; i++ {
		if i > 0 {
			if err := c.vethDown(); err != nil {
				return res, err
			}
		}
		t0 := time.Now()
		if err := c.vethUp(); err != nil {
			return res, fmt.Errorf("veth set-up: %w", err)
		}
		t1 := time.Now()
		fails, err := firstByteTries(ctx, c.baseNS)
		if err != nil {
			return res, fmt.Errorf("veth: first byte: %w", err)
		}
		fb := time.Since(t0)
		c.logf("veth: set-up %s, first byte %s%s%s", t1.Sub(t0).Round(time.Microsecond), fb.Round(time.Microsecond), warm(i), failed(fails))
		if i > 0 {
			res.Baseline.Setup = append(res.Baseline.Setup, t1.Sub(t0))
			res.Baseline.FirstByte = append(res.Baseline.FirstByte, fb)
		}
	}
	var errs []error
	for i, k := range c.cfg.Kinds {
		row := &res.Tunnels[i]
		if k.Egress.TunnelType == app.TunnelProxy {
			if err := c.checkProxy(ctx, k, row); err != nil {
				row.Err = "the lab's proxy server fails through outbound.Dialer: " + err.Error()
				errs = append(errs, fmt.Errorf("%s: %s", k.Name, row.Err))
				continue
			}
		}
		c.logf("%s: attach x%d", k.Name, c.cfg.Attaches+1)
		for j := 0; j <= c.cfg.Attaches; j++ {
			if err := c.m.Detach(ctx, hostID); err != nil {
				return res, err
			}
			c.current = ""
			t0 := time.Now()
			err := c.m.Attach(ctx, hostID, c.cfg.TunnelPid, k.Egress)
			t1 := time.Now()
			if err != nil {
				var ae *app.Error
				if errors.As(err, &ae) && ae.Code == "tunnel_type_unsupported" {
					row.Unsupported = err.Error()
				} else {
					row.Err = "Manager.Attach: " + err.Error()
					errs = append(errs, fmt.Errorf("%s: %s", k.Name, row.Err))
				}
				break
			}
			c.current = k.Name
			fails, err := firstByteTries(ctx, c.tunNS)
			if err != nil {
				row.Err = "first byte after Manager.Attach: " + err.Error()
				errs = append(errs, fmt.Errorf("%s: %s", k.Name, row.Err))
				break
			}
			fb := time.Since(t0)
			c.logf("%s: attach %s, first byte %s%s%s", k.Name, t1.Sub(t0).Round(time.Microsecond), fb.Round(time.Microsecond), warm(j), failed(fails))
			if j > 0 {
				row.Setup = append(row.Setup, t1.Sub(t0))
				row.FirstByte = append(row.FirstByte, fb)
			}
		}
	}

	// Throughput: every measurable row once per round, the order rotating each round so
	// that each row takes every place in turn and the machine's drift is shared.
	type entry struct {
		row  *rowResult
		spec *kindSpec // nil: baseline
	}
	active := []entry{{row: &res.Baseline}}
	for i := range c.cfg.Kinds {
		if r := &res.Tunnels[i]; r.Unsupported == "" && r.Err == "" {
			active = append(active, entry{r, &c.cfg.Kinds[i]})
		}
	}
	do := func(e entry, n int64, record bool) error {
		pid, ns := c.cfg.BasePid, c.baseNS
		if e.spec != nil {
			pid, ns = c.cfg.TunnelPid, c.tunNS
			if c.current != e.spec.Name {
				if err := c.m.Attach(ctx, hostID, c.cfg.TunnelPid, e.spec.Egress); err != nil {
					return fmt.Errorf("%s: Manager.Attach: %w", e.row.Name, err)
				}
				c.current = e.spec.Name
			}
		}
		if err := firstByte(ctx, ns); err != nil { // handshakes and connections are ready
			return fmt.Errorf("%s: %w", e.row.Name, err)
		}
		s, err := c.download(ctx, pid, n)
		if err != nil {
			return fmt.Errorf("%s: %w", e.row.Name, err)
		}
		if record {
			e.row.MiBps = append(e.row.MiBps, float64(n)/(1<<20)/s.wall.Seconds())
			e.row.Bytes += n
			e.row.CPUServer += s.server
			e.row.CPULab += s.lab
			e.row.CPUClient += s.client
		}
		c.logf("%-16s %8.1f MiB/s%s", e.row.Name, float64(n)/(1<<20)/s.wall.Seconds(), warm(map[bool]int{false: 0, true: 1}[record]))
		return nil
	}
	for _, e := range active {
		if err := do(e, max(c.cfg.Bytes/8, 1<<20), false); err != nil {
			return res, err
		}
	}
	for r := 0; r < c.cfg.Rounds; r++ {
		c.logf("round %d/%d", r+1, c.cfg.Rounds)
		for i := range active {
			if err := do(active[(i+r)%len(active)], c.cfg.Bytes, true); err != nil {
				return res, err
			}
		}
	}
	return res, errors.Join(errs...)
}

func failed(tries []string) string {
	if len(tries) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed tries, first: %s)", len(tries), tries[0])
}

func warm(i int) string {
	if i == 0 {
		return " (warm-up)"
	}
	return ""
}

// vethUp gives the baseline box what a plain container network gives it: a veth whose other
// end is in the provider namespace, addresses, and a default route.
func (c *child) vethUp() error {
	la := netlink.NewLinkAttrs()
	la.Name = "eth0"
	if err := c.hc.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "cbtb0", PeerNamespace: netlink.NsFd(c.provNS)}); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	peer, err := c.hp.LinkByName("cbtb0")
	if err != nil {
		return err
	}
	pa, _ := netlink.ParseAddr(vethProvAddr)
	if err := c.hp.AddrAdd(peer, pa); err != nil {
		return err
	}
	if err := c.hp.LinkSetUp(peer); err != nil {
		return err
	}
	link, err := c.hc.LinkByName("eth0")
	if err != nil {
		return err
	}
	ca, _ := netlink.ParseAddr(vethContAddr)
	if err := c.hc.AddrAdd(link, ca); err != nil {
		return err
	}
	if err := c.hc.LinkSetUp(link); err != nil {
		return err
	}
	if err := c.hc.RouteAdd(&netlink.Route{Gw: net.ParseIP(vethGateway)}); err != nil {
		return err
	}
	// The end brought up first has no carrier yet, so the kernel defers its queueing
	// discipline to the carrier-on event, handled asynchronously (linkwatch); until then it
	// drops what it sends (the first ARP reply, and the SYN waits a second). The veth is
	// usable once both ends report operstate up.
	for deadline := time.Now().Add(2 * time.Second); ; {
		pl, err1 := c.hp.LinkByIndex(peer.Attrs().Index)
		cl, err2 := c.hc.LinkByIndex(link.Attrs().Index)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if pl.Attrs().OperState == netlink.OperUp && cl.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth operstate %s / %s after 2 s", pl.Attrs().OperState, cl.Attrs().OperState)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func (c *child) vethDown() error {
	link, err := c.hc.LinkByName("eth0")
	if err != nil {
		return err
	}
	return c.hc.LinkDel(link) // its peer goes with it
}

// checkProxy fetches through the lab's proxy server with outbound.Dialer from this
// namespace (no container, no Manager), so a row that fails is known to fail in the
// tunnel, not in the lab, and downloads once the same way for DialerMiBps.
func (c *child) checkProxy(ctx context.Context, k kindSpec, row *rowResult) error {
	d, err := outbound.New(k.Egress.ProxyConfig, outbound.Options{})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DisableKeepAlives: true}}
	get := func(url string) (int64, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return io.Copy(io.Discard, resp.Body)
	}
	if _, err := get(c.cfg.SmallURL); err != nil {
		return err
	}
	t0 := time.Now()
	n, err := get(fmt.Sprintf("%s?n=%d", c.cfg.URL, c.cfg.Bytes))
	if err != nil {
		return err
	}
	if n != c.cfg.Bytes {
		return fmt.Errorf("got %d bytes of %d", n, c.cfg.Bytes)
	}
	row.DialerMiBps = float64(n) / (1 << 20) / time.Since(t0).Seconds()
	return nil
}

// firstByte connects from inside ns to the HTTP server and waits for the first byte of the
// answer to a small GET, retrying (for up to 15 s) while the path is not there yet.
func firstByte(ctx context.Context, ns netns.NsHandle) error {
	_, err := firstByteTries(ctx, ns)
	return err
}

// firstByteTries is firstByte, also returning the failed tries' errors.
func firstByteTries(ctx context.Context, ns netns.NsHandle) ([]string, error) {
	deadline := time.Now().Add(15 * time.Second)
	var fails []string
	for {
		t := time.Now()
		err := probe(ctx, ns)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return fails, err
		}
		fails = append(fails, fmt.Sprintf("%v after %s", err, time.Since(t).Round(time.Millisecond)))
		time.Sleep(2 * time.Millisecond)
	}
}

func probe(ctx context.Context, ns netns.NsHandle) error {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := nsNet{ns}.dial(dctx, "tcp", inetIP+":80")
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, "GET /small HTTP/1.1\r\nHost: "+inetIP+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err = io.ReadFull(conn, b)
	return err
}

type sample struct {
	wall                time.Duration
	server, lab, client float64 // CPU seconds
}

// download runs curl inside the box's network namespace (nsenter -n: the box's network, this
// machine's curl binary, the same for every row) and checks that every byte arrived.
func (c *child) download(ctx context.Context, pid int, n int64) (sample, error) {
	url := fmt.Sprintf("%s?n=%d", c.cfg.URL, n)
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-n",
		"curl", "-q", "-sS", "--noproxy", "*", "-o", "/dev/null", "--max-time", "600",
		"-w", "%{http_code} %{size_download} %{time_total}", url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	lab0, self0 := sysinfo.ProcCPU(c.cfg.LabPid), sysinfo.SelfCPU()
	err := cmd.Run()
	lab1, self1 := sysinfo.ProcCPU(c.cfg.LabPid), sysinfo.SelfCPU()
	if err != nil {
		return sample{}, fmt.Errorf("curl: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	f := strings.Fields(stdout.String())
	if len(f) != 3 {
		return sample{}, fmt.Errorf("curl -w: %q", stdout.String())
	}
	size, _ := strconv.ParseInt(f[1], 10, 64)
	secs, _ := strconv.ParseFloat(f[2], 64)
	if f[0] != "200" || size != n || secs <= 0 {
		return sample{}, fmt.Errorf("curl: HTTP %s, %s bytes of %d in %ss", f[0], f[1], n, f[2])
	}
	s := sample{wall: time.Duration(secs * float64(time.Second)), server: self1 - self0, lab: lab1 - lab0}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.client = sysinfo.Seconds(ru.Utime) + sysinfo.Seconds(ru.Stime)
	}
	return s, nil
}
