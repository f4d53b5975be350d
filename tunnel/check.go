package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/miekg/dns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// Check names and budgets.
const (
	CheckConnectivity = "connectivity"
	CheckExitIP       = "exit_ip"
	CheckDNSLeak      = "dns_leak"

	// TestTimeout bounds Manager.Test and Manager.CheckHost as a whole (unless
	// Config.TestTimeout says otherwise); the budgets of the three checks add up to less.
	TestTimeout = 30 * time.Second

	// Budgets of the checks, in 30ths of the whole test's timeout (14 s, 7 s and 8 s of 30 s).
	connectivityBudget = 14
	exitIPBudget       = 7
	dnsLeakBudget      = 8

	// DefaultCheckURL is the public IP-echo service the connectivity and exit_ip checks
	// ask when neither EGRESS_CHECK_URL nor EGRESS_CHECK_SERVER_URL is set: its answer is
	// the caller's IP as text.
	DefaultCheckURL = "https://api.ipify.org"

	// reasonTimedOut is the reason of a check that did not finish within its budget.
	reasonTimedOut = "timed out"
	// reasonNoZone is the reason of a dns_leak check without a check zone.
	reasonNoZone = "skipped: no check zone configured"
)

// Test implements app.Tunnel: it brings the egress tunnel up in this process (no container
// involved) and runs three checks through it:
//
//   - connectivity: an HTTP GET of Config.CheckURL gets an answer;
//   - exit_ip: the check service (or, without one, the IP-echo Config.CheckURL) sees the
//     declared ip_address (a mismatch fails; nothing is rewritten);
//   - dns_leak: a unique name under Config.CheckDNSZone, resolved through the tunnel by
//     its resolver (wg_dns_server, or Config.ProxyDNSServer for a proxy), reaches the
//     check service only from resolvers inside the tunnel path (that resolver, the
//     declared exit IP or the exit the check service observed). Skipped without a zone.
//
// Every check answers passed, failed or skipped with a reason within Config.TestTimeout;
// one that does not finish in its budget is failed with reason "timed out".
// A WireGuard egress runs on a user-space network stack; a proxy egress through its
// outbound dialer, as the container's traffic would. The error is for a record that
// cannot be tested at all; failed checks are in the result. Testing a WireGuard egress IP
// that is attached to a running host briefly competes with that host's tunnel for the
// peer (same key); the provider follows whichever spoke last.
func (m *Manager) Test(ctx context.Context, e app.EgressIP) (app.EgressTestResult, error) {
	start := time.Now()
	if e.TunnelType == app.TunnelProxy {
		return m.testProxy(ctx, start, e)
	}
	cfg, err := parseWG(e)
	if err != nil {
		return app.EgressTestResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TestTimeout)
	defer cancel()
	failAll := func(reason string) (app.EgressTestResult, error) {
		if ctx.Err() != nil {
			reason = reasonTimedOut + ": " + reason
		}
		return failAllChecks(start, reason), nil
	}

	ep, err := cfg.endpoint(ctx)
	if err != nil {
		return failAll(err.Error())
	}
	var local []netip.Addr
	for _, p := range cfg.addrs {
		local = append(local, p.Addr())
	}
	ut, err := newUserTUN(local, m.cfg.MTU)
	if err != nil {
		return failAll("user-space tunnel: " + err.Error())
	}
	dev := device.NewDevice(ut, conn.NewDefaultBind(), m.deviceLogger("test:"+e.ID))
	defer dev.Close()
	if err := dev.IpcSet(cfg.uapi(ep)); err != nil {
		return failAll("configure wireguard: " + err.Error())
	}
	if err := dev.Up(); err != nil {
		return failAll("wireguard up: " + err.Error())
	}
	// The first packet of the connectivity check also triggers the handshake.
	return m.runChecks(ctx, start, cfg.exitIP, checkPath{
		dial: ut.DialContext,
		resolve: func(ctx context.Context, name string) ([]netip.Addr, error) {
			return queryA(ctx, ut.DialContext, cfg.dns, name)
		},
		via:          "through the tunnel to " + ep.String(),
		resolver:     cfg.dns,
		resolverName: "wg_dns_server",
		noResolver:   "wg_dns_server is not set: the tunnel names no resolver, so DNS would use whatever the container has",
	}), nil
}

// checksConfigured says whether CheckHost can run: it runs only against a check service
// of the operator's own (with its DNS zone), never the public default; Test always runs.
func (m *Manager) checksConfigured() error {
	if m.cfg.CheckServerURL == "" || m.cfg.CheckDNSZone == "" {
		return &app.Error{Kind: app.KindUnavailable, Code: app.CodeTunnelCheckUnconfigured,
			Message: "egress checks need a check service URL and DNS zone in the server configuration"}
	}
	return nil
}

// checkPath is the way out the three checks of runChecks take.
type checkPath struct {
	// dial connects to a literal IP address through the path.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// resolve asks resolver for a name's A records through the path.
	resolve      func(ctx context.Context, name string) ([]netip.Addr, error)
	via          string     // "through the tunnel to ...", for the reasons
	resolver     netip.Addr // invalid: the path has none (noResolver says why it fails)
	resolverName string     // what the configuration calls the resolver
	noResolver   string
}

// dialHost is dial with host names resolved by the path's resolver.
func (p *checkPath) dialHost(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if !p.resolver.IsValid() {
			return nil, fmt.Errorf("cannot resolve %s: %s", host, p.noResolver)
		}
		ips, err := p.resolve(ctx, host)
		if err == nil && len(ips) == 0 {
			err = errors.New("no A record")
		}
		if err != nil {
			return nil, fmt.Errorf("resolve %s with %s %s %s: %w", host, p.resolverName, p.resolver, p.via, err)
		}
		addr = net.JoinHostPort(ips[0].String(), port)
	}
	return p.dial(ctx, network, addr)
}

// failAllChecks is the result of a tunnel that did not come up: connectivity failed for
// reason, the others skipped.
func failAllChecks(start time.Time, reason string) app.EgressTestResult {
	skip := "skipped: no connectivity (" + reason + ")"
	return app.EgressTestResult{DurationMS: time.Since(start).Milliseconds(), Checks: []app.EgressCheck{
		{Name: CheckConnectivity, Status: app.CheckFailed, Reason: reason},
		{Name: CheckExitIP, Status: app.CheckSkipped, Reason: skip},
		{Name: CheckDNSLeak, Status: app.CheckSkipped, Reason: skip},
	}}
}

// ipEchoURL is what the exit_ip check asks for the exit IP: the check service's root,
// else the connectivity URL (by default a public IP-echo service).
func (m *Manager) ipEchoURL() string {
	if m.cfg.CheckServerURL != "" {
		return strings.TrimSuffix(m.cfg.CheckServerURL, "/") + "/"
	}
	return m.cfg.CheckURL
}

// budget is n 30ths of the whole test's timeout.
func (m *Manager) budget(n int) time.Duration { return m.cfg.TestTimeout * time.Duration(n) / 30 }

// runChecks runs connectivity, exit_ip and dns_leak through p, each with its own budget,
// result and reason.
func (m *Manager) runChecks(ctx context.Context, start time.Time, exitIP netip.Addr, p checkPath) app.EgressTestResult {
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // the path is the only way
			DialContext:       p.dialHost,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	res := app.EgressTestResult{}
	finish := func() app.EgressTestResult {
		// Skipped checks fail nothing; a test whose connectivity failed is not OK.
		res.OK = len(res.Checks) == 3
		for _, c := range res.Checks {
			res.OK = res.OK && c.Status != app.CheckFailed
		}
		res.DurationMS = time.Since(start).Milliseconds()
		return res
	}
	skipped := func(name, reason string) {
		res.Checks = append(res.Checks, app.EgressCheck{Name: name, Status: app.CheckSkipped, Reason: reason})
	}
	// run runs f in its own goroutine and waits at most its budget (and the whole test's
	// deadline): a check that does not answer in time is failed "timed out" whatever f
	// is stuck in.
	run := func(name string, budget time.Duration, f func(context.Context) (bool, string)) bool {
		t0 := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, budget)
		defer ccancel()
		type verdict struct {
			ok     bool
			reason string
		}
		done := make(chan verdict, 1)
		go func() {
			ok, reason := f(cctx)
			done <- verdict{ok, reason}
		}()
		var v verdict
		select {
		case v = <-done:
			if !v.ok && cctx.Err() != nil {
				v.reason = reasonTimedOut + ": " + v.reason
			}
		case <-cctx.Done():
			v.reason = reasonTimedOut
		}
		st := app.CheckFailed
		if v.ok {
			st = app.CheckPassed
		}
		res.Checks = append(res.Checks, app.EgressCheck{Name: name, OK: v.ok, Status: st, Reason: v.reason, DurationMS: time.Since(t0).Milliseconds()})
		return v.ok
	}
	connected := run(CheckConnectivity, m.budget(connectivityBudget), func(ctx context.Context) (bool, string) {
		status, _, err := httpGet(ctx, client, m.cfg.CheckURL, 0)
		if err != nil {
			return false, fmt.Sprintf("no HTTP answer from %s %s: %v", m.cfg.CheckURL, p.via, err)
		}
		return true, fmt.Sprintf("%s answered HTTP %d %s", m.cfg.CheckURL, status, p.via)
	})
	if !connected {
		skip := "skipped: no connectivity " + p.via
		skipped(CheckExitIP, skip)
		skipped(CheckDNSLeak, skip)
		return finish()
	}

	// observed is the exit the check service saw, right or wrong (atomic: a timed-out
	// exit_ip check may still be running when dns_leak reads it).
	var observedP atomic.Pointer[netip.Addr]
	echo := m.ipEchoURL()
	run(CheckExitIP, m.budget(exitIPBudget), func(ctx context.Context) (bool, string) {
		_, body, err := httpGet(ctx, client, echo, 256)
		if err != nil {
			return false, "IP echo: " + err.Error()
		}
		got, err := netip.ParseAddr(strings.TrimSpace(string(body)))
		if err != nil {
			return false, fmt.Sprintf("check service answered %q, not an IP address", truncate(string(body), 64))
		}
		got = got.Unmap()
		observedP.Store(&got)
		if got != exitIP {
			return false, fmt.Sprintf("traffic exits as %s but the declared ip_address is %s", got, exitIP)
		}
		return true, fmt.Sprintf("traffic exits as %s", got)
	})

	switch {
	case m.cfg.CheckDNSZone == "":
		skipped(CheckDNSLeak, reasonNoZone)
		return finish()
	case m.cfg.CheckServerURL == "":
		skipped(CheckDNSLeak, "skipped: no check service configured (EGRESS_CHECK_SERVER_URL): the DNS-leak check reads its DNS log")
		return finish()
	}
	run(CheckDNSLeak, m.budget(dnsLeakBudget), func(ctx context.Context) (bool, string) {
		var observed netip.Addr
		if o := observedP.Load(); o != nil {
			observed = *o
		}
		if !p.resolver.IsValid() {
			return false, p.noResolver
		}
		name, err := uniqueName(m.cfg.CheckDNSZone)
		if err != nil {
			return false, err.Error()
		}
		if _, err := p.resolve(ctx, name); err != nil {
			return false, fmt.Sprintf("resolving %s with %s %s %s: %v", name, p.resolverName, p.resolver, p.via, err)
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
			if err != nil || (a != p.resolver && a != exitIP && a != observed) {
				outside = append(outside, r)
			}
		}
		if len(outside) > 0 {
			return false, fmt.Sprintf("DNS leak: %s was asked by %s, outside the tunnel path (%s %s, exit %s)",
				name, strings.Join(outside, ", "), p.resolverName, p.resolver, exitIP)
		}
		return true, fmt.Sprintf("%s was asked only by %s", name, strings.Join(resolvers, ", "))
	})
	return finish()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// httpGet fetches u and returns the status and up to limit bytes of the body.
func httpGet(ctx context.Context, c *http.Client, u string, limit int64) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return 0, nil, err
	}
	if limit > 0 && resp.StatusCode != http.StatusOK {
		return resp.StatusCode, body, fmt.Errorf("%s answered HTTP %d", u, resp.StatusCode)
	}
	return resp.StatusCode, body, nil
}

func uniqueName(zone string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "leak-" + hex.EncodeToString(b[:]) + "." + strings.Trim(strings.ToLower(zone), "."), nil
}

// queryA asks server for name's A records over UDP sockets from dial, retrying on
// timeouts over the context's budget.
func queryA(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), server netip.Addr, name string) ([]netip.Addr, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var last error
	for ctx.Err() == nil {
		var ips []netip.Addr
		ips, last = func() ([]netip.Addr, error) {
			c, err := dial(ctx, "udp", netip.AddrPortFrom(server, 53).String())
			if err != nil {
				return nil, err
			}
			defer c.Close()
			dl := time.Now().Add(2 * time.Second)
			if d, ok := ctx.Deadline(); ok && d.Before(dl) {
				dl = d
			}
			c.SetDeadline(dl)
			dc := &dns.Conn{Conn: c}
			if err := dc.WriteMsg(q); err != nil {
				return nil, err
			}
			r, err := dc.ReadMsg()
			if err != nil {
				return nil, err
			}
			return aRecords(q, r)
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

// aRecords returns the IPv4 addresses answering q in r.
func aRecords(q, r *dns.Msg) ([]netip.Addr, error) {
	if r.Id != q.Id {
		return nil, errors.New("mismatched answer")
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
	}
	var ips []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				ips = append(ips, ip)
			}
		}
	}
	return ips, nil
}
