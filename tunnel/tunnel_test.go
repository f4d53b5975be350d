package tunnel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// waitExit polls the check service from inside the container until it answers.
func waitExit(t *testing.T, c *container, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got, err := c.httpGet(ctx, "http://"+labInetIP+"/")
		cancel()
		if err == nil {
			return got
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("container never reached the check service through the tunnel: %v", last)
	return ""
}

// assertOnlyTunnelRoutes checks that every route of the container leads into the tunnel,
// to loopback, or nowhere (unreachable), and that IPv6 has no way around the tunnel.
func assertOnlyTunnelRoutes(t *testing.T, c *container, wantV6InTunnel bool) {
	t.Helper()
	assertOnlyRoutesVia(t, c, InterfaceName, wantV6InTunnel)
}

// assertOnlyRoutesVia is assertOnlyTunnelRoutes for the tunnel device ifname.
func assertOnlyRoutesVia(t *testing.T, c *container, ifname string, wantV6InTunnel bool) {
	t.Helper()
	rs, ls := c.routes(t)
	names := map[int]string{}
	wg := 0
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
		if l.Attrs().Name == ifname {
			wg = l.Attrs().Index
		} else if l.Attrs().Flags&net.FlagLoopback == 0 {
			t.Errorf("container has interface %s besides lo and %s", l.Attrs().Name, ifname)
		}
	}
	if wg == 0 {
		t.Fatalf("container has no %s", ifname)
	}
	var def4, def6 *netlink.Route
	for i, r := range rs {
		name := names[r.LinkIndex]
		switch {
		case r.LinkIndex == wg, name == "lo":
		case r.LinkIndex == 0 && r.Type == unix.RTN_UNREACHABLE:
		default:
			t.Errorf("route %s (type %d, dev %q) does not go into the tunnel", r, r.Type, name)
		}
		if r.Dst != nil && r.Table == unix.RT_TABLE_MAIN {
			if ones, _ := r.Dst.Mask.Size(); ones == 0 {
				if r.Dst.IP.To4() != nil {
					def4 = &rs[i]
				} else {
					def6 = &rs[i]
				}
			}
		}
	}
	if def4 == nil || def4.LinkIndex != wg {
		t.Errorf("IPv4 default route is not via %s: %v", ifname, def4)
	}
	switch {
	case def6 == nil && c.v6Disabled(t) && !wantV6InTunnel:
		// IPv6 is off in the container (Docker does that): nothing to route.
	case def6 == nil:
		t.Errorf("no IPv6 default route: want %s", map[bool]string{true: "into the tunnel", false: "unreachable"}[wantV6InTunnel])
	case wantV6InTunnel && def6.LinkIndex != wg:
		t.Errorf("IPv6 default route is not via %s: %v", ifname, def6)
	case !wantV6InTunnel && def6.Type != unix.RTN_UNREACHABLE:
		t.Errorf("IPv6 default route is not unreachable: %v", def6)
	}
}

// assertNoConnectivity checks the container reaches nothing: the dial fails, and within
// a deadline (a dead tunnel swallows packets; a missing one rejects them at once).
func assertNoConnectivity(t *testing.T, c *container, wantUnreachable bool) {
	t.Helper()
	for _, addr := range []string{labInetIP + ":80", "[2001:db8::1]:80"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := c.dial(ctx, "tcp", addr)
		cancel()
		if err == nil {
			conn.Close()
			t.Fatalf("container connected to %s without a working tunnel", addr)
		}
		v6 := strings.HasPrefix(addr, "[")
		if v6 && c.v6Disabled(t) && errors.Is(err, syscall.EADDRNOTAVAIL) {
			continue // IPv6 is off in the container
		}
		if (wantUnreachable || v6) && !unreachable(err) {
			t.Errorf("dial %s: want network unreachable, got %v", addr, err)
		}
	}
}

// assertNoRoutes checks the container has loopback only: no interface, no route out.
func assertNoRoutes(t *testing.T, c *container) {
	t.Helper()
	rs, ls := c.routes(t)
	lo := 0
	for _, lk := range ls {
		if lk.Attrs().Flags&net.FlagLoopback == 0 {
			t.Errorf("container has interface %s", lk.Attrs().Name)
		} else {
			lo = lk.Attrs().Index
		}
	}
	for _, r := range rs {
		if r.LinkIndex != lo {
			t.Errorf("container has route %s", r)
		}
	}
	assertNoConnectivity(t, c, true)
}

// unreachable reports an immediate routing refusal (no route, or an unreachable route).
func unreachable(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}

func checkContainerDNS(t *testing.T, l *lab, c *container) {
	t.Helper()
	server := c.resolver(t)
	if server != labInetIP {
		t.Fatalf("container resolver = %s, want wg_dns_server %s", server, labInetIP)
	}
	name := "ctr-" + randHex(6) + "." + labZone
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.lookupA(ctx, server, name)
	if err != nil {
		t.Fatalf("container DNS: %v", err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("container DNS answer: %v", r)
	}
	if got := l.svc.Resolvers(name); len(got) != 1 || got[0] != labExitIP {
		t.Fatalf("check service saw %s asked by %v, want only %s (through the tunnel)", name, got, labExitIP)
	}
}

// TestAttachNetnsContainer runs the lab scenario with wireguard-go, whatever the kernel has.
func TestAttachNetnsContainer(t *testing.T) {
	l := newLab(t)
	attachScenario(t, l, l.wgManager(t, WireGuardUserspace), KindWireGuardGo)
}

// TestAttachNetnsContainerKernel runs the lab scenario with kernel WireGuard. It is skipped
// on a kernel without WireGuard (no wireguard module), where it cannot run at all.
func TestAttachNetnsContainerKernel(t *testing.T) {
	requireLab(t)
	if err := KernelWireGuard(); err != nil {
		t.Skipf("kernel WireGuard unavailable (needs the wireguard kernel module): %v", err)
	}
	l := newLab(t)
	m := l.wgManager(t, WireGuardKernel)
	attachScenario(t, l, m, KindWireGuardKernel)

	t.Run("IPv6 into the tunnel", func(t *testing.T) {
		c := newNetnsContainer(t)
		if err := m.Attach(context.Background(), "k6", c.pid, l.egress(labPeerAddr+", fd00:66::2/128")); err != nil {
			t.Fatal(err)
		}
		assertOnlyTunnelRoutes(t, c, true)
		if err := m.Detach(context.Background(), "k6"); err != nil {
			t.Fatal(err)
		}
	})
}

// linkKind is the kind of the container's tunnel device ("tuntap", "wireguard").
func linkKind(t *testing.T, c *container, ifname string) string {
	t.Helper()
	_, ls := c.routes(t)
	for _, l := range ls {
		if l.Attrs().Name == ifname {
			return l.Type()
		}
	}
	t.Fatalf("container has no %s", ifname)
	return ""
}

// udpPortOpen reports whether /proc/<pid>/net/udp{,6}, the UDP sockets of pid's network
// namespace, has a socket bound to port.
func udpPortOpen(t *testing.T, pid int, port int) bool {
	t.Helper()
	for _, f := range []string{"udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				return true
			}
		}
	}
	return false
}

// attachScenario is the lab scenario of a WireGuard tunnel made by m, of kind.
func attachScenario(t *testing.T, l *lab, m *Manager, kind string) {
	c := newNetnsContainer(t)
	ctx := context.Background()
	e := l.egress(labPeerAddr)
	if err := m.Attach(ctx, "h1", c.pid, e); err != nil {
		t.Fatal(err)
	}

	t.Run("exits as the egress IP", func(t *testing.T) {
		if got := waitExit(t, c, 15*time.Second); got != labExitIP {
			t.Fatalf("container exits as %q, want %s", got, labExitIP)
		}
		st := m.Status("h1")
		if !st.Attached || st.EgressID != e.ID || st.Kind != kind || st.Endpoint != l.endpoint.String() ||
			st.LastHandshake.IsZero() || st.RxBytes == 0 || st.TxBytes == 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("device kind", func(t *testing.T) {
		want := map[string]string{KindWireGuardGo: "tuntap", KindWireGuardKernel: "wireguard"}[kind]
		if got := linkKind(t, c, InterfaceName); got != want {
			t.Fatalf("%s is a %q link, want %q", InterfaceName, got, want)
		}
		if kind != KindWireGuardKernel {
			return
		}
		// The kernel link's UDP socket stays in the server's namespace.
		m.mu.Lock()
		a := m.hosts["h1"]
		m.mu.Unlock()
		d, err := a.wgc.Device(InterfaceName)
		if err != nil || d.ListenPort == 0 {
			t.Fatalf("kernel device: %+v, %v", d, err)
		}
		if udpPortOpen(t, c.pid, d.ListenPort) {
			t.Errorf("the WireGuard socket (port %d) is in the container's namespace", d.ListenPort)
		}
		if !udpPortOpen(t, os.Getpid(), d.ListenPort) {
			t.Errorf("the WireGuard socket (port %d) is not in the server's namespace", d.ListenPort)
		}
	})
	t.Run("DNS goes through the tunnel", func(t *testing.T) { checkContainerDNS(t, l, c) })
	t.Run("only tunnel routes; IPv6 cannot go around", func(t *testing.T) {
		assertOnlyTunnelRoutes(t, c, false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if conn, err := c.dial(ctx, "tcp6", "[2001:db8::1]:80"); err == nil {
			conn.Close()
			t.Fatal("IPv6 connected around the tunnel")
		} else if !unreachable(err) && !(c.v6Disabled(t) && errors.Is(err, syscall.EADDRNOTAVAIL)) {
			t.Fatalf("IPv6 dial: want network unreachable, got %v", err)
		}
	})
	t.Run("attach again is a no-op", func(t *testing.T) {
		before := m.Status("h1").AttachedAt
		if err := m.Attach(ctx, "h1", c.pid, e); err != nil {
			t.Fatal(err)
		}
		if after := m.Status("h1").AttachedAt; !after.Equal(before) {
			t.Fatal("re-attaching the same egress rebuilt the tunnel")
		}
	})
	t.Run("detach leaves nothing", func(t *testing.T) {
		if err := m.Detach(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if m.Status("h1").Attached {
			t.Fatal("still attached")
		}
		assertNoRoutes(t, c)
		if err := m.Detach(ctx, "h1"); err != nil {
			t.Fatalf("second detach: %v", err)
		}
	})
	t.Run("re-attach, then a dead provider means no traffic", func(t *testing.T) {
		if err := m.Attach(ctx, "h1", c.pid, e); err != nil {
			t.Fatal(err)
		}
		if got := waitExit(t, c, 15*time.Second); got != labExitIP {
			t.Fatalf("container exits as %q", got)
		}
		l.provDev.Close()
		assertNoConnectivity(t, c, false)
		assertOnlyTunnelRoutes(t, c, false)
	})
}

func TestAttachDockerContainer(t *testing.T) {
	requireLab(t)
	c := newDockerContainer(t)
	l := newLab(t)
	m := l.manager(t)
	ctx := context.Background()
	if err := m.Attach(ctx, "hd", c.pid, l.egress(labPeerAddr)); err != nil {
		t.Fatal(err)
	}
	if got := waitExit(t, c, 15*time.Second); got != labExitIP {
		t.Fatalf("container exits as %q, want %s", got, labExitIP)
	}
	checkContainerDNS(t, l, c)
	assertOnlyTunnelRoutes(t, c, false)
	if err := m.Detach(ctx, "hd"); err != nil {
		t.Fatal(err)
	}
	assertNoConnectivity(t, c, true)
}

func TestAttachIPv6IntoTunnel(t *testing.T) {
	l := newLab(t)
	m := l.manager(t)
	c := newNetnsContainer(t)
	// A listener at the provider's tunnel address, reachable only through the tunnel.
	var ln net.Listener
	if err := nsthread.Run(l.provNS, func() error {
		var err error
		ln, err = net.Listen("tcp6", "[fd00:66::1]:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte(conn.RemoteAddr().String()))
			conn.Close()
		}
	}()
	if err := m.Attach(context.Background(), "h6", c.pid, l.egress(labPeerAddr+", fd00:66::2/128")); err != nil {
		t.Fatal(err)
	}
	assertOnlyTunnelRoutes(t, c, true)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := c.dial(ctx, "tcp6", "[fd00:66::1]:8080")
		cancel()
		if err == nil {
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			b := make([]byte, 100)
			n, _ := conn.Read(b)
			conn.Close()
			if ap, err := netip.ParseAddrPort(string(b[:n])); err != nil || ap.Addr() != netip.MustParseAddr("fd00:66::2") {
				t.Fatalf("provider saw %q, want fd00:66::2", b[:n])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 through the tunnel: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAttachRefusesUnsafeTargets(t *testing.T) {
	requireLab(t)
	m := NewManager(Config{})
	defer m.Close()
	e := app.EgressIP{ID: "x", IPAddress: labExitIP, TunnelType: app.TunnelWireGuard, WGEndpoint: "10.255.255.1:51820",
		WGPublicKey: newKey(t).pub, WGPrivateKey: newKey(t).priv, WGPeerAddress: labPeerAddr, WGDNSServer: labInetIP}
	if err := m.Attach(context.Background(), "self", os.Getpid(), e); err == nil || !strings.Contains(err.Error(), "server's own network namespace") {
		t.Fatalf("attach to the server's namespace: %v", err)
	}
	c := newNetnsContainer(t)
	sh(t, "ip", "-n", c.name, "link", "add", "extra0", "type", "veth", "peer", "name", "extra1")
	err := m.Attach(context.Background(), "extra", c.pid, e)
	if err == nil || !strings.Contains(err.Error(), `interface "extra`) {
		t.Fatalf("attach to a namespace with another interface: %v", err)
	}
	_, ls := c.routes(t)
	for _, lk := range ls {
		if lk.Attrs().Name == InterfaceName {
			t.Fatalf("%s left behind after a refused attach", InterfaceName)
		}
	}
	if m.Status("extra").Attached {
		t.Fatal("refused attach is attached")
	}
}

// nsthread.IsOwn tells the server's namespace from another even while goroutines hold threads
// in that other one: the main thread may be one of them, and /proc/<pid>/ns/net (the main
// thread's) then names the other namespace, not the server's.
func TestSameNetnsWhileThreadsAreElsewhere(t *testing.T) {
	requireLab(t)
	other := addNetns(t, "cctn"+randHex(3))
	self, err := nsthread.Own()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 * goruntime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := nsthread.Run(other, func() error { time.Sleep(20 * time.Microsecond); return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	n, wrong := 0, 0
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); n++ {
		inOther, err := nsthread.IsOwn(other)
		if err != nil {
			t.Fatal(err)
		}
		inSelf, err := nsthread.IsOwn(self)
		if err != nil {
			t.Fatal(err)
		}
		if inOther || !inSelf {
			wrong++
		}
	}
	close(stop)
	wg.Wait()
	if wrong > 0 {
		t.Fatalf("IsOwn mistook the server's namespace %d times in %d", wrong, n)
	}
}

func TestManagerTest(t *testing.T) {
	l := newLab(t)
	m := l.manager(t)
	ctx := context.Background()

	t.Run("right declared IP passes all checks", func(t *testing.T) {
		res, err := m.Test(ctx, l.egress(labPeerAddr))
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK || len(res.Checks) != 3 {
			t.Fatalf("result %+v", res)
		}
		for i, want := range []string{CheckConnectivity, CheckExitIP, CheckDNSLeak} {
			if res.Checks[i].Name != want || !res.Checks[i].OK || res.Checks[i].Reason == "" {
				t.Errorf("check %d: %+v", i, res.Checks[i])
			}
		}
		if res.DurationMS > TestTimeout.Milliseconds() {
			t.Errorf("took %d ms", res.DurationMS)
		}
	})
	t.Run("wrong declared IP fails exit_ip", func(t *testing.T) {
		e := l.egress(labPeerAddr)
		e.IPAddress = "203.0.113.99"
		res, err := m.Test(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK {
			t.Fatalf("passed with a wrong declared IP: %+v", res)
		}
		byName := checksByName(t, res)
		x := byName[CheckExitIP]
		if x.OK || !strings.Contains(x.Reason, labExitIP) || !strings.Contains(x.Reason, "203.0.113.99") {
			t.Fatalf("exit_ip check: %+v", x)
		}
		if !byName[CheckConnectivity].OK {
			t.Errorf("connectivity: %+v", byName[CheckConnectivity])
		}
	})
	t.Run("proxy without proxy_config is invalid", func(t *testing.T) {
		_, err := m.Test(ctx, app.EgressIP{TunnelType: app.TunnelProxy, IPAddress: labExitIP})
		var ae *app.Error
		if !errors.As(err, &ae) || ae.Kind != app.KindInvalid {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown tunnel type is unsupported", func(t *testing.T) {
		_, err := m.Test(ctx, app.EgressIP{TunnelType: "openvpn", IPAddress: labExitIP})
		var ae *app.Error
		if !errors.As(err, &ae) || ae.Code != "tunnel_type_unsupported" {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestWireGuardModes proves the choice of WireGuard implementation on this machine's
// kernel: auto takes kernel WireGuard when there is one and falls back to wireguard-go
// otherwise; userspace is wireguard-go in any case; forcing kernel WireGuard without it
// fails with an error saying why and leaves nothing behind; an unknown mode fails.
func TestWireGuardModes(t *testing.T) {
	l := newLab(t)
	kerr := KernelWireGuard()
	t.Logf("kernel WireGuard: %v", kerr)
	ctx := context.Background()
	e := l.egress(labPeerAddr)
	autoKind, autoLink := KindWireGuardKernel, "wireguard"
	if kerr != nil {
		autoKind, autoLink = KindWireGuardGo, "tuntap"
	}
	for _, tc := range []struct{ mode, kind, link string }{
		{"", autoKind, autoLink},
		{WireGuardAuto, autoKind, autoLink},
		{WireGuardUserspace, KindWireGuardGo, "tuntap"},
	} {
		t.Run("mode "+cmp.Or(tc.mode, "unset"), func(t *testing.T) {
			m := l.wgManager(t, tc.mode)
			c := newNetnsContainer(t)
			if err := m.Attach(ctx, "m", c.pid, e); err != nil {
				t.Fatal(err)
			}
			if got := waitExit(t, c, 15*time.Second); got != labExitIP {
				t.Fatalf("container exits as %q, want %s", got, labExitIP)
			}
			if st := m.Status("m"); st.Kind != tc.kind {
				t.Fatalf("status %+v, want kind %s", st, tc.kind)
			}
			if got := linkKind(t, c, InterfaceName); got != tc.link {
				t.Fatalf("%s is a %q link, want %q", InterfaceName, got, tc.link)
			}
			if err := m.Detach(ctx, "m"); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("mode kernel", func(t *testing.T) {
		m := l.wgManager(t, WireGuardKernel)
		c := newNetnsContainer(t)
		err := m.Attach(ctx, "k", c.pid, e)
		if kerr == nil {
			if err != nil {
				t.Fatal(err)
			}
			if st := m.Status("k"); st.Kind != KindWireGuardKernel {
				t.Fatalf("status %+v", st)
			}
			return
		}
		t.Logf("forced kernel mode: %v", err)
		if err == nil || !strings.Contains(err.Error(), `WireGuard mode "kernel"`) || !strings.Contains(err.Error(), kerr.Error()) {
			t.Fatalf("forced kernel WireGuard on a kernel without it: err = %v", err)
		}
		if errors.Is(kerr, unix.EOPNOTSUPP) && !strings.Contains(err.Error(), "wireguard module") {
			t.Errorf("the error does not name the missing module: %v", err)
		}
		if m.Status("k").Attached {
			t.Fatal("attached")
		}
		assertNoRoutes(t, c)
		ls, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, lk := range ls {
			if strings.HasPrefix(lk.Attrs().Name, "ccpwg") {
				t.Errorf("link %s left in the server's namespace", lk.Attrs().Name)
			}
		}
	})

	t.Run("unknown mode", func(t *testing.T) {
		m := l.wgManager(t, "turbo")
		c := newNetnsContainer(t)
		if err := m.Attach(ctx, "u", c.pid, e); err == nil || !strings.Contains(err.Error(), `"turbo"`) {
			t.Fatalf("err = %v", err)
		}
	})
}
