package tunnel

import (
	"context"
	"fmt"
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
	d, err := newDialer(e, outbound.Options{})
	if err != nil {
		return app.EgressTestResult{}, err
	}
	exitIP, err := netip.ParseAddr(strings.TrimSpace(e.IPAddress))
	if err != nil {
		return app.EgressTestResult{}, badEgress("ip_address", "ip_address must be an IP address")
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TestTimeout)
	defer cancel()
	resolver := m.cfg.ProxyDNSServer
	return m.runChecks(ctx, start, exitIP.Unmap(), checkPath{
		dial: d.DialContext,
		resolve: func(ctx context.Context, name string) ([]netip.Addr, error) {
			return proxyQueryA(ctx, d, resolver, name)
		},
		via:          fmt.Sprintf("through the %s proxy %s", d.Type(), d.Server()),
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
	return aRecords(q, r)
}
