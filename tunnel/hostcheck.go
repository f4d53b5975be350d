package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// CheckHost implements app.Tunnel: it runs the connectivity, exit_ip and dns_leak
// checks of Test (see runChecks) from inside the network namespace of the container whose
// init process is pid, so it proves what the container itself gets, whatever kind of
// tunnel gives it its way out. Every socket is created in the container's namespace on a
// locked OS thread (see nsthread.Run); host names, including the check URL's, are
// resolved by the container's own resolver (the first nameserver of its /etc/resolv.conf)
// through that namespace, and the dns_leak check asks that resolver.
//
// The whole run is bounded by Config.TestTimeout. The error is for a host that cannot be checked
// at all (no process, the server's own namespace, checks not configured); failed checks
// are in the result.
func (m *Manager) CheckHost(ctx context.Context, hostID string, pid int, e app.EgressIP) (app.EgressTestResult, error) {
	start := time.Now()
	if pid <= 0 {
		return app.EgressTestResult{}, fmt.Errorf("host check %s: no container process (pid %d): is it running?", hostID, pid)
	}
	if err := m.checksConfigured(); err != nil {
		return app.EgressTestResult{}, err
	}
	exitIP, err := netip.ParseAddr(strings.TrimSpace(e.IPAddress))
	if err != nil {
		return app.EgressTestResult{}, badEgress("ip_address", "ip_address must be an IP address")
	}
	target, err := netns.GetFromPid(pid)
	if err != nil {
		return app.EgressTestResult{}, fmt.Errorf("host check %s: netns of pid %d: %w", hostID, pid, err)
	}
	nd := &nsDialer{ns: target}
	defer nd.close()
	if same, err := nsthread.IsOwn(target); err != nil || same {
		if err == nil {
			err = errors.New("the process is in the server's own network namespace: checking from there proves nothing about the container")
		}
		return app.EgressTestResult{}, fmt.Errorf("host check %s: pid %d: %w", hostID, pid, err)
	}

	ctx, cancel := context.WithTimeout(ctx, m.cfg.TestTimeout)
	defer cancel()
	nd.base = ctx
	p := checkPath{
		dial:         nd.dial,
		via:          "inside the container",
		resolverName: "container resolver",
	}
	if p.resolver, err = containerResolver(pid); err != nil {
		p.noResolver = err.Error()
	}
	p.resolve = func(ctx context.Context, name string) ([]netip.Addr, error) {
		return queryA(ctx, nd.dial, p.resolver, name)
	}
	return m.runChecks(ctx, start, exitIP.Unmap(), p), nil
}

// nsDialer dials from inside one network namespace. The namespace handle is closed only
// once no dial uses it any more: an HTTP transport may still be dialing in the background
// after the request that asked gave up, and a closed (and reused) descriptor must never be
// handed to setns.
type nsDialer struct {
	mu     sync.Mutex
	ns     netns.NsHandle
	refs   int
	closed bool
	base   context.Context // the check's context: every dial stops when it ends
}

func (d *nsDialer) acquire() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.refs++
	return true
}

func (d *nsDialer) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refs--
	if d.closed && d.refs == 0 && d.ns.IsOpen() {
		d.ns.Close()
		d.ns = -1
	}
}

func (d *nsDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.refs == 0 && d.ns.IsOpen() {
		d.ns.Close()
		d.ns = -1
	}
}

// dial creates and connects a socket inside the namespace (addr must be a literal IP).
func (d *nsDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	// A name would be resolved with the server's resolv.conf, not the container's.
	if host, _, err := net.SplitHostPort(addr); err != nil {
		return nil, err
	} else if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("dial %s in the container: not a literal IP address", addr)
	}
	if !d.acquire() {
		return nil, errors.New("host check is over")
	}
	defer d.release()
	if d.base != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(d.base, cancel)()
	}
	return nsthread.Dial(ctx, d.ns, network, addr)
}

// containerResolver returns the first nameserver of the container's /etc/resolv.conf,
// read through the container's root with symlinks resolved inside it.
func containerResolver(pid int) (netip.Addr, error) {
	f, err := openContainerFile(pid, "etc/resolv.conf", unix.O_RDONLY, 0)
	if err != nil {
		return netip.Addr{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" {
			a, err := netip.ParseAddr(fs[1])
			if err != nil || a.Zone() != "" {
				return netip.Addr{}, fmt.Errorf("container /etc/resolv.conf names nameserver %q, not an IP address", truncate(fs[1], 64))
			}
			return a.Unmap(), nil
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("container /etc/resolv.conf: %w", err)
	}
	return netip.Addr{}, errors.New("container /etc/resolv.conf names no nameserver: the container cannot resolve names")
}
