package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
	"github.com/miekg/dns"
)

// The proxy part of the lab: the provider namespace also runs the provider's proxy server
// (outbound.Serve, the same libraries as the client), listening on the provider's veth
// address toward the server and relaying from its own namespace, where the route to the
// internet namespace leaves from 203.0.113.10. The internet namespace also runs a UDP
// service on labInetIP:labUDPPort that answers each datagram with the sender's address.
const labUDPPort = 7

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// provDial and provListenPacket open sockets inside the provider namespace.
func (l *lab) provDial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsthread.Dial(ctx, l.provNS, network, addr)
}

func (l *lab) provListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	var (
		pc  net.PacketConn
		err error
	)
	if nsErr := nsthread.Run(l.provNS, func() error {
		var lc net.ListenConfig
		pc, err = lc.ListenPacket(ctx, network, addr)
		return nil
	}); nsErr != nil {
		if pc != nil {
			pc.Close()
		}
		return nil, nsErr
	}
	return pc, err
}

// proxyServer is a provider's proxy server running in the provider namespace.
type proxyServer struct {
	raw  json.RawMessage // the proxy_config clients use
	addr netip.AddrPort
	udp  bool                  // it also listens on UDP at addr (shadowsocks)
	sc   outbound.ServerConfig // what it serves with, but for its UDP socket
	kill func()                // of the running server
}

// stop kills the server: listener and every connection and socket closed.
func (p *proxyServer) stop() { p.kill() }

// startProxy runs the server of cfg (a proxy_config without server and port) in the
// provider namespace, with TLS from a throwaway CA the config trusts when withTLS.
func (l *lab) startProxy(t *testing.T, cfg map[string]any, withTLS bool) *proxyServer {
	t.Helper()
	provIP := l.endpoint.Addr()
	p := &proxyServer{udp: cfg["type"] == "shadowsocks"}
	ln, pc := l.proxyListen(t, netip.AddrPortFrom(provIP, 0), p.udp)
	port := ln.Addr().(*net.TCPAddr).Port
	p.addr = netip.AddrPortFrom(provIP, uint16(port))
	p.sc = outbound.ServerConfig{Dial: l.provDial, ListenPacket: l.provListenPacket, Logger: testLogger(t).With("side", "provider")}
	if withTLS {
		serverTLS, caPEM, err := outbound.SelfSigned(provIP.String())
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		p.sc.TLS = serverTLS
		cfg["tls"] = map[string]any{"enabled": true, "certificate": string(caPEM)}
	}
	cfg["server"], cfg["server_port"] = provIP.String(), port
	var err error
	if p.raw, err = json.Marshal(cfg); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	l.serveProxy(t, p, ln, pc)
	return p
}

// restartProxy runs the killed server p again: same address, config and certificate, so
// the clients of the proxy_config it had find it again.
func (l *lab) restartProxy(t *testing.T, p *proxyServer) {
	t.Helper()
	ln, pc := l.proxyListen(t, p.addr, p.udp)
	l.serveProxy(t, p, ln, pc)
}

// proxyListen opens the server's listener at addr in the provider namespace, and its UDP
// socket on the same port when udp (retrying the pick of a port when addr has none).
func (l *lab) proxyListen(t *testing.T, addr netip.AddrPort, udp bool) (net.Listener, net.PacketConn) {
	t.Helper()
	var (
		ln net.Listener
		pc net.PacketConn
	)
	err := nsthread.Run(l.provNS, func() error {
		for try := 0; ; try++ {
			var err error
			if ln, err = net.Listen("tcp", addr.String()); err != nil {
				return err
			}
			if !udp {
				return nil
			}
			if pc, err = net.ListenPacket("udp", ln.Addr().String()); err == nil || try > 10 || addr.Port() != 0 {
				return err
			}
			ln.Close()
		}
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("proxy server listener: %v", err)
	}
	return ln, pc
}

// serveProxy serves p on ln (and pc) until it is stopped or the test ends.
func (l *lab) serveProxy(t *testing.T, p *proxyServer, ln net.Listener, pc net.PacketConn) {
	sc := p.sc
	sc.UDP = pc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- outbound.Serve(ctx, ln, p.raw, sc) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("proxy server: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("proxy server did not stop")
			}
		})
	}
	t.Cleanup(stop)
	p.kill = stop
}

// startUDPService answers every datagram to labInetIP:labUDPPort with the sender's
// address, in the internet namespace.
func (l *lab) startUDPService(t *testing.T) {
	t.Helper()
	var pc net.PacketConn
	if err := nsthread.Run(l.inetNS, func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(labInetIP, strconv.Itoa(labUDPPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 2048)
		for {
			_, addr, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(addr.String()), addr)
		}
	}()
}

func (l *lab) proxyManager(t *testing.T) *Manager {
	m := NewManager(Config{
		CheckURL: "http://" + labInetIP + "/", CheckServerURL: "http://" + labInetIP, CheckDNSZone: labZone,
		ProxyDNSServer: netip.MustParseAddr(labInetIP), Logger: testLogger(t),
	})
	t.Cleanup(func() { m.Close() })
	return m
}

func proxyEgress(id string, raw json.RawMessage) app.EgressIP {
	return app.EgressIP{ID: id, Label: "lab proxy", IPAddress: labExitIP, TunnelType: app.TunnelProxy, ProxyConfig: raw}
}

// udpExchange sends a datagram from the container to the lab's UDP service and returns
// the answer (the address the service saw).
func (c *container) udpExchange(t *testing.T, within time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	conn, err := c.dial(ctx, "udp", net.JoinHostPort(labInetIP, strconv.Itoa(labUDPPort)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	b := make([]byte, 512)
	var last error
	for ctx.Err() == nil {
		conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := conn.Write([]byte("who am i")); err != nil {
			return "", err
		}
		n, err := conn.Read(b)
		if err == nil {
			return string(b[:n]), nil
		}
		last = err
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
	return "", last
}

func randomSS2022Key(t *testing.T) string {
	k := make([]byte, 16)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// labProxyCase is a proxy type of the lab: the provider's server config (a proxy_config
// without server and port; startProxy completes it), whether it runs over TLS, and whether
// the outbound carries UDP.
type labProxyCase struct {
	name string
	cfg  map[string]any
	tls  bool
	udp  bool
}

// labProxyCases are the lab's proxy types, one of each, with fresh configs.
func labProxyCases(t *testing.T) []labProxyCase {
	const id = "b831381d-6324-4d53-ad4f-8cda48b30811"
	return []labProxyCase{
		{"socks", map[string]any{"type": "socks", "username": "lab", "password": "secret"}, false, true},
		{"http", map[string]any{"type": "http", "username": "lab", "password": "secret"}, false, false},
		{"shadowsocks", map[string]any{"type": "shadowsocks", "method": "2022-blake3-aes-128-gcm", "password": randomSS2022Key(t)}, false, true},
		{"vmess", map[string]any{"type": "vmess", "uuid": id, "security": "aes-128-gcm"}, false, true},
		{"vless", map[string]any{"type": "vless", "uuid": id}, true, true},
		{"trojan", map[string]any{"type": "trojan", "password": "secret"}, true, true},
	}
}

// Every proxy type, through a real TUN in a container namespace: the container exits as
// the egress IP, its DNS reaches the check service through the proxy, its UDP goes through
// when the protocol carries it and is refused otherwise, it has no route but the TUN, the
// server-side test passes with the right IP and fails with a wrong one, the host check from
// inside the container passes, detaching leaves it nothing, and a killed proxy server
// leaves it no connectivity at all.
func TestProxyTunnel(t *testing.T) {
	l := newLab(t)
	l.startUDPService(t)
	m := l.proxyManager(t)
	cases := labProxyCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := l.startProxy(t, tc.cfg, tc.tls)
			e := proxyEgress("eg-"+tc.name, srv.raw)
			c := newNetnsContainer(t)
			host := "hp-" + tc.name
			if err := m.Attach(ctx, host, c.pid, e); err != nil {
				t.Fatal(err)
			}

			if got := waitExit(t, c, 15*time.Second); got != labExitIP {
				t.Fatalf("container exits as %q, want %s", got, labExitIP)
			}
			checkContainerDNS(t, l, c)
			got, err := c.udpExchange(t, 3*time.Second)
			if tc.udp {
				if err != nil || !strings.HasPrefix(got, labExitIP+":") {
					t.Fatalf("UDP through the proxy: answer %q, %v; want it from %s", got, err, labExitIP)
				}
			} else if err == nil {
				t.Fatalf("UDP went out (seen as %s) though %s carries no UDP", got, tc.name)
			} else if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Logf("UDP refused as %v (want ECONNREFUSED from the port-unreachable answer)", err)
			}
			assertOnlyRoutesVia(t, c, ProxyInterfaceName, false)

			st := m.Status(host)
			if !st.Attached || st.EgressID != e.ID || st.Interface != ProxyInterfaceName || st.Endpoint != srv.addr.String() ||
				st.LastHandshake.IsZero() || st.RxBytes == 0 || st.TxBytes == 0 {
				t.Errorf("status %+v", st)
			}
			if err := m.Attach(ctx, host, c.pid, e); err != nil || !m.Status(host).AttachedAt.Equal(st.AttachedAt) {
				t.Errorf("attaching the same egress again rebuilt the tunnel (%v)", err)
			}

			res, err := m.Test(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK || len(res.Checks) != 3 {
				t.Fatalf("test with the right ip_address: %+v", res)
			}
			for i, want := range []string{CheckConnectivity, CheckExitIP, CheckDNSLeak} {
				if ch := res.Checks[i]; ch.Name != want || !ch.OK || ch.Reason == "" {
					t.Errorf("check %d: %+v", i, ch)
				}
			}
			wrong := e
			wrong.IPAddress = "203.0.113.99"
			res, err = m.Test(ctx, wrong)
			if err != nil {
				t.Fatal(err)
			}
			byName := checksByName(t, res)
			if x := byName[CheckExitIP]; res.OK || x.OK || !strings.Contains(x.Reason, labExitIP) || !strings.Contains(x.Reason, "203.0.113.99") {
				t.Fatalf("test with a wrong ip_address: %+v", res)
			}
			if !byName[CheckConnectivity].OK || !byName[CheckDNSLeak].OK {
				t.Errorf("a wrong ip_address failed more than exit_ip: %+v", res)
			}

			hres, err := m.CheckHost(ctx, host, c.pid, e)
			if err != nil || !hres.OK {
				t.Errorf("host check inside the container: %+v, %v", hres, err)
			}

			if err := m.Detach(ctx, host); err != nil {
				t.Fatal(err)
			}
			assertNoRoutes(t, c)

			if err := m.Attach(ctx, host, c.pid, e); err != nil {
				t.Fatal(err)
			}
			if got := waitExit(t, c, 15*time.Second); got != labExitIP {
				t.Fatalf("after re-attach the container exits as %q", got)
			}
			before := m.Status(host)
			srv.stop()
			assertNoConnectivity(t, c, false)
			dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			if r, err := c.lookupA(dctx, labInetIP, "dead-"+randHex(4)+"."+labZone); err == nil {
				t.Errorf("DNS answered with the proxy dead: %v", r)
			}
			cancel()
			if got, err := c.udpExchange(t, time.Second); err == nil {
				t.Errorf("UDP answered (as %s) with the proxy dead", got)
			}
			assertOnlyRoutesVia(t, c, ProxyInterfaceName, false)
			if after := m.Status(host); after.TxBytes <= before.TxBytes || after.RxBytes != before.RxBytes {
				t.Errorf("with the proxy dead the container sent %d bytes and heard %d back (want > 0 and 0)",
					after.TxBytes-before.TxBytes, after.RxBytes-before.RxBytes)
			}
			hres, err = m.CheckHost(ctx, host, c.pid, e)
			if err != nil || hres.OK || len(hres.Checks) == 0 || hres.Checks[0].OK {
				t.Errorf("host check with the proxy dead: %+v, %v", hres, err)
			}
			if err := m.Detach(ctx, host); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A real Docker container (--network none) behind a proxy egress.
func TestProxyTunnelDocker(t *testing.T) {
	requireLab(t)
	c := newDockerContainer(t)
	l := newLab(t)
	m := l.proxyManager(t)
	srv := l.startProxy(t, map[string]any{"type": "trojan", "password": "secret"}, true)
	ctx := context.Background()
	if err := m.Attach(ctx, "hpd", c.pid, proxyEgress("eg-docker", srv.raw)); err != nil {
		t.Fatal(err)
	}
	if got := waitExit(t, c, 15*time.Second); got != labExitIP {
		t.Fatalf("container exits as %q, want %s", got, labExitIP)
	}
	checkContainerDNS(t, l, c)
	assertOnlyRoutesVia(t, c, ProxyInterfaceName, false)
	if err := m.Detach(ctx, "hpd"); err != nil {
		t.Fatal(err)
	}
	assertNoConnectivity(t, c, true)
}

func TestAttachProxyRefusesBadConfig(t *testing.T) {
	m := NewManager(Config{})
	defer m.Close()
	for name, raw := range map[string]string{
		"none":      ``,
		"no server": `{"type":"socks"}`,
		"transport": `{"type":"vmess","server":"198.51.100.1","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","transport":{"type":"ws"}}`,
	} {
		err := m.Attach(context.Background(), "bad", os.Getpid(), app.EgressIP{ID: "x", IPAddress: labExitIP, TunnelType: app.TunnelProxy, ProxyConfig: json.RawMessage(raw)})
		var ae *app.Error
		if !errors.As(err, &ae) || ae.Kind != app.KindInvalid {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if m.Status("bad").Attached {
		t.Fatal("attached with a bad config")
	}
}

// An answer that came over TCP is cut to what the container's UDP query takes.
func TestFitUDP(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("big.example.", dns.TypeA)
	ans := new(dns.Msg)
	ans.SetReply(q)
	for i := range 100 {
		ans.Answer = append(ans.Answer, &dns.A{Hdr: dns.RR_Header{Name: "big.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.IPv4(192, 0, 2, byte(i))})
	}
	qw, _ := q.Pack()
	aw, _ := ans.Pack()
	got := fitUDP(qw, aw)
	var r dns.Msg
	if err := r.Unpack(got); err != nil || len(got) > dns.MinMsgSize || !r.Truncated || r.Id != q.Id {
		t.Fatalf("truncated answer: %d bytes, tc=%v, %v", len(got), r.Truncated, err)
	}
	q.SetEdns0(4096, false)
	qw, _ = q.Pack()
	if got := fitUDP(qw, aw); len(got) != len(aw) {
		t.Fatalf("an EDNS0 4096 query got %d of %d bytes", len(got), len(aw))
	}
}
