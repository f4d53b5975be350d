package tunnel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var _ app.HostChecker = (*Manager)(nil)

// Budgets of the three host checks; together they stay within TestTimeout.
const (
	hostCheckConnectivityBudget = 14 * time.Second
	hostCheckExitIPBudget       = 7 * time.Second
	hostCheckDNSLeakBudget      = 8 * time.Second
)

// CheckHost implements app.HostChecker: it runs the connectivity, exit_ip and dns_leak
// checks from inside the network namespace of the container whose init process is pid,
// so it proves what the container itself gets, whatever kind of tunnel gives it its way
// out. Every socket is created in the container's namespace on a locked OS thread (see
// inNetns); host names, including the check URL's, are resolved by the container's own
// resolver (the first nameserver of its /etc/resolv.conf) through that namespace.
//
//   - connectivity: an HTTP GET of Config.CheckURL gets an answer;
//   - exit_ip: the check service sees e.IPAddress (a mismatch fails; nothing is rewritten);
//   - dns_leak: a unique name under Config.CheckDNSZone, asked of the container's resolver,
//     reaches the check service only from resolvers inside the tunnel path (the container's
//     resolver, the declared exit IP or the exit the check service observed).
//
// The whole run is bounded by TestTimeout. The error is for a host that cannot be checked
// at all (no process, the server's own namespace, checks not configured); failed checks
// are in the result.
func (m *Manager) CheckHost(ctx context.Context, hostID string, pid int, e app.EgressIP) (app.EgressTestResult, error) {
	start := time.Now()
	if pid <= 0 {
		return app.EgressTestResult{}, fmt.Errorf("host check %s: no container process (pid %d): is it running?", hostID, pid)
	}
	if m.cfg.CheckServerURL == "" || m.cfg.CheckDNSZone == "" {
		return app.EgressTestResult{}, &app.Error{Kind: app.KindUnavailable, Code: "tunnel_check_unconfigured",
			Message: "egress checks need a check service URL and DNS zone in the server configuration"}
	}
	exitIP, err := netip.ParseAddr(strings.TrimSpace(e.IPAddress))
	if err != nil {
		return app.EgressTestResult{}, badEgress("ip_address", "ip_address must be an IP address")
	}
	exitIP = exitIP.Unmap()
	target, err := netns.GetFromPid(pid)
	if err != nil {
		return app.EgressTestResult{}, fmt.Errorf("host check %s: netns of pid %d: %w", hostID, pid, err)
	}
	nd := &nsDialer{ns: target}
	defer nd.close()
	if same, err := sameNetns(target); err != nil || same {
		if err == nil {
			err = errors.New("the process is in the server's own network namespace: checking from there proves nothing about the container")
		}
		return app.EgressTestResult{}, fmt.Errorf("host check %s: pid %d: %w", hostID, pid, err)
	}

	ctx, cancel := context.WithTimeout(ctx, TestTimeout)
	defer cancel()
	nd.base = ctx
	resolver, resolverErr := containerResolver(pid)

	res := app.EgressTestResult{}
	run := func(name string, budget time.Duration, f func(context.Context) (bool, string)) bool {
		t0 := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, budget)
		ok, reason := f(cctx)
		ccancel()
		res.Checks = append(res.Checks, app.EgressCheck{Name: name, OK: ok, Reason: reason, DurationMS: time.Since(t0).Milliseconds()})
		return ok
	}
	finish := func() (app.EgressTestResult, error) {
		res.OK = len(res.Checks) == 3
		for _, c := range res.Checks {
			res.OK = res.OK && c.OK
		}
		res.DurationMS = time.Since(start).Milliseconds()
		return res, nil
	}

	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err != nil {
			if resolverErr != nil {
				return nil, fmt.Errorf("cannot resolve %s: %w", host, resolverErr)
			}
			ips, err := queryAVia(ctx, nd.dial, resolver, host)
			if err != nil {
				return nil, fmt.Errorf("resolve %s with the container's resolver %s: %w", host, resolver, err)
			}
			if len(ips) == 0 {
				return nil, fmt.Errorf("resolve %s with the container's resolver %s: no A record", host, resolver)
			}
			addr = net.JoinHostPort(ips[0].String(), port)
		}
		return nd.dial(ctx, network, addr)
	}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // the container's own way out, nothing else
			DialContext:       dial,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	connected := run(CheckConnectivity, hostCheckConnectivityBudget, func(ctx context.Context) (bool, string) {
		status, _, err := httpGet(ctx, client, m.cfg.CheckURL, 0)
		if err != nil {
			return false, fmt.Sprintf("no HTTP answer from %s inside the container: %v", m.cfg.CheckURL, err)
		}
		return true, fmt.Sprintf("%s answered HTTP %d inside the container", m.cfg.CheckURL, status)
	})
	if !connected {
		skip := "skipped: the container has no connectivity"
		res.Checks = append(res.Checks, app.EgressCheck{Name: CheckExitIP, Reason: skip}, app.EgressCheck{Name: CheckDNSLeak, Reason: skip})
		return finish()
	}

	var observed netip.Addr
	run(CheckExitIP, hostCheckExitIPBudget, func(ctx context.Context) (bool, string) {
		_, body, err := httpGet(ctx, client, strings.TrimSuffix(m.cfg.CheckServerURL, "/")+"/", 256)
		if err != nil {
			return false, "check service: " + err.Error()
		}
		got, err := netip.ParseAddr(strings.TrimSpace(string(body)))
		if err != nil {
			return false, fmt.Sprintf("check service answered %q, not an IP address", truncate(string(body), 64))
		}
		got = got.Unmap()
		observed = got
		if got != exitIP {
			return false, fmt.Sprintf("the container's traffic exits as %s but the declared ip_address is %s", got, exitIP)
		}
		return true, fmt.Sprintf("the container's traffic exits as %s", got)
	})

	run(CheckDNSLeak, hostCheckDNSLeakBudget, func(ctx context.Context) (bool, string) {
		if resolverErr != nil {
			return false, resolverErr.Error()
		}
		name, err := uniqueName(m.cfg.CheckDNSZone)
		if err != nil {
			return false, err.Error()
		}
		if _, err := queryAVia(ctx, nd.dial, resolver, name); err != nil {
			return false, fmt.Sprintf("resolving %s with the container's resolver %s: %v", name, resolver, err)
		}
		u := strings.TrimSuffix(m.cfg.CheckServerURL, "/") + "/dns-log?name=" + url.QueryEscape(name)
		_, body, err := httpGet(ctx, client, u, 64<<10)
		if err != nil {
			return false, "check service dns log: " + err.Error()
		}
		var resolvers []string
		if err := json.Unmarshal(body, &resolvers); err != nil {
			return false, "check service dns log: " + err.Error()
		}
		if len(resolvers) == 0 {
			return false, fmt.Sprintf("no query for %s reached the check service", name)
		}
		var outside []string
		for _, r := range resolvers {
			a, err := netip.ParseAddr(r)
			a = a.Unmap()
			if err != nil || (a != resolver && a != exitIP && a != observed) {
				outside = append(outside, r)
			}
		}
		if len(outside) > 0 {
			return false, fmt.Sprintf("DNS leak: %s was asked by %s, outside the tunnel path (container resolver %s, exit %s)",
				name, strings.Join(outside, ", "), resolver, exitIP)
		}
		return true, fmt.Sprintf("%s was asked only by %s", name, strings.Join(resolvers, ", "))
	})
	return finish()
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
	var (
		c       net.Conn
		dialErr error
	)
	if err := inNetns(d.ns, func() error {
		var nd net.Dialer
		c, dialErr = nd.DialContext(ctx, network, addr)
		return nil
	}); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return c, dialErr
}

// containerResolver returns the first nameserver of the container's /etc/resolv.conf,
// read through the container's root with symlinks resolved inside it.
func containerResolver(pid int) (netip.Addr, error) {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("container root: %w", err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, "etc/resolv.conf", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("container /etc/resolv.conf: %w", err)
	}
	f := os.NewFile(uintptr(fd), "resolv.conf")
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return netip.Addr{}, errors.New("container /etc/resolv.conf is not a regular file")
	}
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

// queryAVia asks server for name's A records over UDP sockets from dial, retrying on
// timeouts over the context's budget.
func queryAVia(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), server netip.Addr, name string) ([]netip.Addr, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var (
		last error
		ips  []netip.Addr
	)
	for ctx.Err() == nil {
		last = func() error {
			c, err := dial(ctx, "udp", netip.AddrPortFrom(server, 53).String())
			if err != nil {
				return err
			}
			defer c.Close()
			dl := time.Now().Add(2 * time.Second)
			if d, ok := ctx.Deadline(); ok && d.Before(dl) {
				dl = d
			}
			c.SetDeadline(dl)
			dc := &dns.Conn{Conn: c}
			if err := dc.WriteMsg(m); err != nil {
				return err
			}
			r, err := dc.ReadMsg()
			if err != nil {
				return err
			}
			if r.Id != m.Id {
				return errors.New("mismatched answer")
			}
			if r.Rcode != dns.RcodeSuccess {
				return fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
						ips = append(ips, ip)
					}
				}
			}
			return nil
		}()
		if last == nil {
			return ips, nil
		}
		var ne net.Error
		if !errors.As(last, &ne) || !ne.Timeout() {
			return nil, last
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return nil, last
}
