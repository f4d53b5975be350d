package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
	"github.com/miekg/dns"
)

// testProxy runs Test's checks through a proxy egress's outbound from the server: what
// the container behind it would get, with Config.ProxyDNSServer as its resolver asked
// through the proxy.
func (m *Manager) testProxy(ctx context.Context, start time.Time, e app.EgressIP) (app.EgressTestResult, error) {
	d, err := outbound.New(e.ProxyConfig, outbound.Options{})
	if err != nil {
		return app.EgressTestResult{}, err
	}
	exitIP, err := netip.ParseAddr(strings.TrimSpace(e.IPAddress))
	if err != nil {
		return app.EgressTestResult{}, badEgress("ip_address", "ip_address must be an IP address")
	}
	if err := m.checksConfigured(); err != nil {
		return app.EgressTestResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, TestTimeout)
	defer cancel()
	resolver := m.cfg.ProxyDNSServer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err != nil {
			ips, err := proxyQueryA(ctx, d, resolver, host)
			if err != nil {
				return nil, fmt.Errorf("resolve %s through the proxy: %w", host, err)
			}
			if len(ips) == 0 {
				return nil, fmt.Errorf("resolve %s through the proxy: no A record", host)
			}
			addr = net.JoinHostPort(ips[0].String(), port)
		}
		return d.DialContext(ctx, network, addr)
	}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // the outbound is the only way
			DialContext:       dial,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	return m.runChecks(ctx, start, exitIP.Unmap(), checkPath{
		client: client,
		via:    fmt.Sprintf("through the %s proxy %s", d.Type(), d.Server()),
		lookup: func(ctx context.Context, name string) error {
			_, err := proxyQueryA(ctx, d, resolver, name)
			return err
		},
		resolver:     resolver,
		resolverName: "the proxy DNS server",
	}), nil
}

// proxyQueryA asks server for name's A records through d.
func proxyQueryA(ctx context.Context, d outbound.Dialer, server netip.Addr, name string) ([]netip.Addr, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	ans, err := outbound.ExchangeDNS(ctx, d, netip.AddrPortFrom(server, 53), wire)
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(ans); err != nil {
		return nil, err
	}
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
