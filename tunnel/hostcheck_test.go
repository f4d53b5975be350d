package tunnel

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/miekg/dns"
)

// checksByName indexes a result's checks, failing unless it has exactly the three.
func checksByName(t *testing.T, res app.EgressTestResult) map[string]app.EgressCheck {
	t.Helper()
	out := map[string]app.EgressCheck{}
	for _, c := range res.Checks {
		out[c.Name] = c
	}
	if len(res.Checks) != 3 || len(out) != 3 {
		t.Fatalf("want the three checks, got %+v", res.Checks)
	}
	for i, want := range []string{CheckConnectivity, CheckExitIP, CheckDNSLeak} {
		if res.Checks[i].Name != want {
			t.Fatalf("check %d is %q, want %q", i, res.Checks[i].Name, want)
		}
	}
	return out
}

// checkHost runs CheckHost and fails the test on an error or on a run over the budget.
func checkHost(t *testing.T, m *Manager, c *container, e app.EgressIP) (app.EgressTestResult, map[string]app.EgressCheck) {
	t.Helper()
	t0 := time.Now()
	res, err := m.CheckHost(context.Background(), "hc", c.pid, e)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > TestTimeout+2*time.Second || res.DurationMS > TestTimeout.Milliseconds() {
		t.Fatalf("host check took %v (reported %d ms), budget %v", d, res.DurationMS, TestTimeout)
	}
	t.Logf("host check: ok=%v in %d ms: %+v", res.OK, res.DurationMS, res.Checks)
	return res, checksByName(t, res)
}

func TestCheckHostRefuses(t *testing.T) {
	e := app.EgressIP{IPAddress: labExitIP, TunnelType: app.TunnelWireGuard}
	m := NewManager(Config{CheckServerURL: "http://" + labInetIP, CheckDNSZone: labZone})
	defer m.Close()
	if _, err := m.CheckHost(context.Background(), "h", 0, e); err == nil {
		t.Fatal("checked a host without a process")
	}
	if _, err := m.CheckHost(context.Background(), "h", os.Getpid(), e); err == nil || !strings.Contains(err.Error(), "server's own network namespace") {
		t.Fatalf("checking from the server's own namespace: err = %v", err)
	}
	bad := e
	bad.IPAddress = "not-an-ip"
	if _, err := m.CheckHost(context.Background(), "h", os.Getpid(), bad); err == nil {
		t.Fatal("checked against a declared address that is not one")
	}
	un := NewManager(Config{})
	defer un.Close()
	_, err := un.CheckHost(context.Background(), "h", os.Getpid(), e)
	var ae *app.Error
	if !errors.As(err, &ae) || ae.Code != "tunnel_check_unconfigured" {
		t.Fatalf("unconfigured checks: err = %v", err)
	}
}

// TestCheckHostNetnsContainer runs the host check inside a container namespace whose only
// way out is the lab's WireGuard tunnel.
func TestCheckHostNetnsContainer(t *testing.T) {
	l := newLab(t)
	m := l.manager(t)
	c := newNetnsContainer(t)
	ctx := context.Background()
	e := l.egress(labPeerAddr)
	if err := m.Attach(ctx, "hc", c.pid, e); err != nil {
		t.Fatal(err)
	}

	t.Run("passes through the tunnel", func(t *testing.T) {
		// No warm-up: the check's first packet brings the handshake.
		res, by := checkHost(t, m, c, e)
		if !res.OK {
			t.Fatalf("checks failed: %+v", res.Checks)
		}
		for _, ch := range res.Checks {
			if !ch.OK || ch.Reason == "" {
				t.Errorf("check %+v", ch)
			}
		}
		if !strings.Contains(by[CheckExitIP].Reason, labExitIP) {
			t.Errorf("exit_ip: %+v", by[CheckExitIP])
		}
		// The leak check asked the container's resolver (wg_dns_server, set by Attach),
		// and the query reached the check service from the tunnel's exit.
		if !strings.Contains(by[CheckDNSLeak].Reason, "asked only by "+labExitIP) {
			t.Errorf("dns_leak: %+v", by[CheckDNSLeak])
		}
	})

	t.Run("wrong declared IP fails exit_ip", func(t *testing.T) {
		wrong := e
		wrong.IPAddress = "203.0.113.99"
		res, by := checkHost(t, m, c, wrong)
		if res.OK {
			t.Fatalf("passed with a wrong declared IP: %+v", res.Checks)
		}
		x := by[CheckExitIP]
		if x.OK || !strings.Contains(x.Reason, labExitIP) || !strings.Contains(x.Reason, "203.0.113.99") {
			t.Fatalf("exit_ip: %+v", x)
		}
		if !by[CheckConnectivity].OK {
			t.Errorf("connectivity: %+v", by[CheckConnectivity])
		}
	})

	t.Run("the container's resolver asking from outside the tunnel path is a leak", func(t *testing.T) {
		// A forwarding resolver that reaches the check service from another address than
		// its own: the check must ask the resolver the container uses (its resolv.conf)
		// and flag the foreign one.
		const resolver, upstream = "203.0.113.53", "203.0.113.54"
		l.startForwardingResolver(t, resolver, upstream)
		conf := filepath.Join("/etc/netns", c.name, "resolv.conf")
		if err := os.WriteFile(conf, []byte("nameserver "+resolver+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(conf, []byte("nameserver "+labInetIP+"\n"), 0o644)
		res, by := checkHost(t, m, c, e)
		x := by[CheckDNSLeak]
		if res.OK || x.OK || !strings.Contains(x.Reason, "DNS leak") || !strings.Contains(x.Reason, upstream) ||
			!strings.Contains(x.Reason, "container resolver "+resolver) {
			t.Fatalf("dns_leak: %+v", x)
		}
		if !by[CheckConnectivity].OK || !by[CheckExitIP].OK {
			t.Errorf("checks: %+v", res.Checks)
		}
	})

	t.Run("detached tunnel: no connectivity, at once", func(t *testing.T) {
		if err := m.Detach(ctx, "hc"); err != nil {
			t.Fatal(err)
		}
		res, by := checkHost(t, m, c, e)
		if res.OK || by[CheckConnectivity].OK {
			t.Fatalf("a container without a tunnel passed: %+v", res.Checks)
		}
		// The container namespace has no route at all; the server's has one. An
		// immediate "unreachable" proves the sockets were the container's.
		if !strings.Contains(by[CheckConnectivity].Reason, "unreachable") || by[CheckConnectivity].DurationMS > 5000 {
			t.Errorf("connectivity: %+v", by[CheckConnectivity])
		}
		for _, n := range []string{CheckExitIP, CheckDNSLeak} {
			if by[n].OK || !strings.HasPrefix(by[n].Reason, "skipped") {
				t.Errorf("%s: %+v", n, by[n])
			}
		}
	})

	t.Run("killed provider: no connectivity", func(t *testing.T) {
		if err := m.Attach(ctx, "hc", c.pid, e); err != nil {
			t.Fatal(err)
		}
		if res, _ := checkHost(t, m, c, e); !res.OK {
			t.Fatalf("re-attached tunnel fails: %+v", res.Checks)
		}
		l.provDev.Close()
		res, by := checkHost(t, m, c, e)
		if res.OK || by[CheckConnectivity].OK {
			t.Fatalf("passed through a dead tunnel: %+v", res.Checks)
		}
		if by[CheckExitIP].OK || by[CheckDNSLeak].OK {
			t.Fatalf("later checks passed without connectivity: %+v", res.Checks)
		}
	})
}

// startForwardingResolver runs, in the internet namespace, a DNS forwarder listening on
// addr that asks the check service from the address from (both added to the namespace).
func (l *lab) startForwardingResolver(t *testing.T, addr, from string) {
	t.Helper()
	for _, a := range []string{addr, from} {
		sh(t, "ip", "-n", l.inet, "addr", "add", a+"/32", "dev", "cce"+l.id+"i")
	}
	var pc, up net.PacketConn
	if err := nsthread.Run(l.inetNS, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr+":53"); err != nil {
			return err
		}
		up, err = net.ListenPacket("udp", from+":0")
		return err
	}); err != nil {
		if pc != nil {
			pc.Close()
		}
		t.Fatalf("forwarding resolver: %v", err)
	}
	t.Cleanup(func() { up.Close() })
	target := &net.UDPAddr{IP: net.ParseIP(labInetIP), Port: 53}
	var mu sync.Mutex
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		defer mu.Unlock()
		fail := func() {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			w.WriteMsg(m)
		}
		q, err := r.Pack()
		if err != nil {
			fail()
			return
		}
		up.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := up.WriteTo(q, target); err != nil {
			fail()
			return
		}
		buf := make([]byte, 65535)
		n, _, err := up.ReadFrom(buf)
		if err != nil {
			fail()
			return
		}
		ans := new(dns.Msg)
		if err := ans.Unpack(buf[:n]); err != nil {
			fail()
			return
		}
		w.WriteMsg(ans)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}
