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

	// TestTimeout bounds Manager.Test as a whole.
	TestTimeout = 30 * time.Second
)

// Test implements app.Tunnel: it brings the egress tunnel up in this process (no container
// involved) and runs three checks through it:
//
//   - connectivity: an HTTP GET of Config.CheckURL gets an answer;
//   - exit_ip: the check service sees the declared ip_address (a mismatch fails; nothing
//     is rewritten);
//   - dns_leak: a unique name under Config.CheckDNSZone, resolved through the tunnel by
//     its resolver (wg_dns_server, or Config.ProxyDNSServer for a proxy), reaches the
//     check service only from resolvers inside the tunnel path (that resolver, the
//     declared exit IP or the exit the check service observed).
//
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
	if err := m.checksConfigured(); err != nil {
		return app.EgressTestResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, TestTimeout)
	defer cancel()
	failAll := func(reason string) (app.EgressTestResult, error) {
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
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // never around the tunnel
			DialContext:       dialVia(ut, cfg.dns),
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// The first packet of the connectivity check also triggers the handshake.
	return m.runChecks(ctx, start, cfg.exitIP, checkPath{
		client: client,
		via:    "through the tunnel to " + ep.String(),
		lookup: func(ctx context.Context, name string) error {
			_, err := queryA(ctx, ut, cfg.dns, name)
			return err
		},
		resolver:     cfg.dns,
		resolverName: "wg_dns_server",
		noResolver:   "wg_dns_server is not set: the tunnel names no resolver, so DNS would use whatever the container has",
	}), nil
}

func (m *Manager) checksConfigured() error {
	if m.cfg.CheckServerURL == "" || m.cfg.CheckDNSZone == "" {
		return &app.Error{Kind: app.KindUnavailable, Code: "tunnel_check_unconfigured",
			Message: "egress checks need a check service URL and DNS zone in the server configuration"}
	}
	return nil
}

// checkPath is the way out the three checks of Test take.
type checkPath struct {
	client *http.Client // dials through the tunnel, host names resolved by lookup's resolver
	via    string       // "through the tunnel to ...", for the reasons
	// lookup resolves name with resolver through the tunnel.
	lookup       func(ctx context.Context, name string) error
	resolver     netip.Addr // invalid: the tunnel names none (noResolver says why it fails)
	resolverName string     // what the configuration calls the resolver
	noResolver   string
}

func failAllChecks(start time.Time, reason string) app.EgressTestResult {
	res := app.EgressTestResult{}
	for _, n := range []string{CheckConnectivity, CheckExitIP, CheckDNSLeak} {
		res.Checks = append(res.Checks, app.EgressCheck{Name: n, Reason: reason})
	}
	res.DurationMS = time.Since(start).Milliseconds()
	return res
}

// runChecks runs connectivity, exit_ip and dns_leak through p, each with its own budget,
// result and reason.
func (m *Manager) runChecks(ctx context.Context, start time.Time, exitIP netip.Addr, p checkPath) app.EgressTestResult {
	res := app.EgressTestResult{}
	finish := func() app.EgressTestResult {
		res.OK = len(res.Checks) == 3
		for _, c := range res.Checks {
			res.OK = res.OK && c.OK
		}
		res.DurationMS = time.Since(start).Milliseconds()
		return res
	}
	run := func(name string, budget time.Duration, f func(context.Context) (bool, string)) bool {
		t0 := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, budget)
		ok, reason := f(cctx)
		ccancel()
		res.Checks = append(res.Checks, app.EgressCheck{Name: name, OK: ok, Reason: reason, DurationMS: time.Since(t0).Milliseconds()})
		return ok
	}
	connected := run(CheckConnectivity, 14*time.Second, func(ctx context.Context) (bool, string) {
		status, _, err := httpGet(ctx, p.client, m.cfg.CheckURL, 0)
		if err != nil {
			return false, fmt.Sprintf("no HTTP answer from %s %s: %v", m.cfg.CheckURL, p.via, err)
		}
		return true, fmt.Sprintf("%s answered HTTP %d %s", m.cfg.CheckURL, status, p.via)
	})
	if !connected {
		skip := "skipped: no connectivity through the tunnel"
		res.Checks = append(res.Checks, app.EgressCheck{Name: CheckExitIP, Reason: skip}, app.EgressCheck{Name: CheckDNSLeak, Reason: skip})
		return finish()
	}

	var observed netip.Addr // the exit the check service saw, right or wrong
	run(CheckExitIP, 7*time.Second, func(ctx context.Context) (bool, string) {
		_, body, err := httpGet(ctx, p.client, strings.TrimSuffix(m.cfg.CheckServerURL, "/")+"/", 256)
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
			return false, fmt.Sprintf("traffic exits as %s but the declared ip_address is %s", got, exitIP)
		}
		return true, fmt.Sprintf("traffic exits as %s", got)
	})

	run(CheckDNSLeak, 8*time.Second, func(ctx context.Context) (bool, string) {
		if !p.resolver.IsValid() {
			return false, p.noResolver
		}
		name, err := uniqueName(m.cfg.CheckDNSZone)
		if err != nil {
			return false, err.Error()
		}
		if err := p.lookup(ctx, name); err != nil {
			return false, fmt.Sprintf("resolving %s through %s %s: %v", name, p.resolverName, p.resolver, err)
		}
		u := strings.TrimSuffix(m.cfg.CheckServerURL, "/") + "/dns-log?name=" + url.QueryEscape(name)
		_, body, err := httpGet(ctx, p.client, u, 64<<10)
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

// dialVia dials through the user-space tunnel, resolving host names with the tunnel's
// DNS server through the tunnel.
func dialVia(ut *userTUN, dnsServer netip.Addr) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err != nil {
			if !dnsServer.IsValid() {
				return nil, fmt.Errorf("cannot resolve %s: wg_dns_server is not set", host)
			}
			ips, err := queryA(ctx, ut, dnsServer, host)
			if err != nil {
				return nil, fmt.Errorf("resolve %s through the tunnel: %w", host, err)
			}
			if len(ips) == 0 {
				return nil, fmt.Errorf("resolve %s through the tunnel: no A record", host)
			}
			addr = net.JoinHostPort(ips[0].String(), port)
		}
		return ut.DialContext(ctx, network, addr)
	}
}

// queryA asks server for name's A records over the tunnel, retrying over the budget.
func queryA(ctx context.Context, ut *userTUN, server netip.Addr, name string) ([]netip.Addr, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var (
		last error
		ips  []netip.Addr
	)
	for ctx.Err() == nil {
		last = func() error {
			c, err := ut.DialContext(ctx, "udp", netip.AddrPortFrom(server, 53).String())
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
