package tunnel

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
)

// localSocksEgress runs a SOCKS5 proxy on loopback and returns a proxy egress through it
// whose declared exit is 127.0.0.1 (what a local echo server sees).
func localSocksEgress(t *testing.T) app.EgressIP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raw := json.RawMessage(`{"type":"socks","server":"127.0.0.1","server_port":` +
		strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:") + `}`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); outbound.Serve(ctx, ln, raw, outbound.ServerConfig{}) }()
	t.Cleanup(func() { cancel(); <-done })
	return app.EgressIP{ID: "local-socks", Label: "local socks", IPAddress: "127.0.0.1", TunnelType: app.TunnelProxy, ProxyConfig: raw}
}

// hangingServer accepts requests and never answers until the test ends.
func hangingServer(t *testing.T) string {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv.URL
}

// localCheckService runs a CheckService with its HTTP side on loopback and, when dnsIP is
// valid, its DNS side on dnsIP:53 (needs root); it returns the HTTP base URL.
func localCheckService(t *testing.T, dnsIP netip.Addr, zone string) string {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !dnsIP.IsValid() {
		srv := &http.Server{Handler: (&CheckService{}).Handler()}
		go srv.Serve(hl)
		t.Cleanup(func() { srv.Close() })
		return "http://" + hl.Addr().String()
	}
	addr := netip.AddrPortFrom(dnsIP, 53).String()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		hl.Close()
		t.Skipf("check service DNS on %s: %v (needs root)", addr, err)
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		hl.Close()
		pc.Close()
		t.Skipf("check service DNS over TCP on %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	svc := &CheckService{Zone: zone, AnswerIP: netip.MustParseAddr("127.0.0.1")}
	go func() { defer close(done); svc.Serve(ctx, hl, pc, tl) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + hl.Addr().String()
}

// TestEgressTestChecks runs Manager.Test through a local SOCKS proxy against local
// servers (never the internet): it always answers the three checks, each passed, failed or
// skipped with a reason, within the whole test's deadline.
func TestEgressTestChecks(t *testing.T) {
	const deadline = 1500 * time.Millisecond
	dnsIP := netip.MustParseAddr("127.0.0.77")
	type want struct{ status, reason string }
	cases := []struct {
		name string
		cfg  func(t *testing.T) Config
		ok   bool
		want [3]want // connectivity, exit_ip, dns_leak
	}{
		{
			name: "unconfigured: the IP-echo URL answers connectivity and exit IP, DNS skipped",
			cfg: func(t *testing.T) Config {
				return Config{CheckURL: localCheckService(t, netip.Addr{}, "") + "/"}
			},
			ok:   true,
			want: [3]want{{app.CheckPassed, "answered HTTP 200"}, {app.CheckPassed, "traffic exits as 127.0.0.1"}, {app.CheckSkipped, reasonNoZone}},
		},
		{
			name: "connectivity hangs: failed, timed out; the others skipped",
			cfg:  func(t *testing.T) Config { return Config{CheckURL: hangingServer(t)} },
			want: [3]want{{app.CheckFailed, reasonTimedOut}, {app.CheckSkipped, "skipped: no connectivity"}, {app.CheckSkipped, "skipped: no connectivity"}},
		},
		{
			name: "the IP echo hangs: exit IP failed, timed out",
			cfg: func(t *testing.T) Config {
				return Config{CheckURL: localCheckService(t, netip.Addr{}, "") + "/", CheckServerURL: hangingServer(t)}
			},
			want: [3]want{{app.CheckPassed, "answered HTTP 200"}, {app.CheckFailed, reasonTimedOut}, {app.CheckSkipped, reasonNoZone}},
		},
		{
			name: "check service and zone configured: all three run",
			cfg: func(t *testing.T) Config {
				if os.Geteuid() != 0 {
					t.Skip("the check service's DNS side listens on port 53: needs root")
				}
				u := localCheckService(t, dnsIP, "check.test")
				return Config{CheckServerURL: u, CheckDNSZone: "check.test", ProxyDNSServer: dnsIP}
			},
			ok:   true,
			want: [3]want{{app.CheckPassed, "answered HTTP 200"}, {app.CheckPassed, "traffic exits as 127.0.0.1"}, {app.CheckPassed, "was asked only by"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := localSocksEgress(t)
			cfg := tc.cfg(t)
			cfg.TestTimeout = deadline
			cfg.Logger = testLogger(t)
			m := NewManager(cfg)
			defer m.Close()
			t0 := time.Now()
			res, err := m.Test(context.Background(), e)
			took := time.Since(t0)
			if err != nil {
				t.Fatalf("Test: %v (the whole test must never fail)", err)
			}
			if took > deadline+500*time.Millisecond {
				t.Errorf("Test took %v, deadline %v", took, deadline)
			}
			if res.OK != tc.ok || len(res.Checks) != 3 {
				t.Fatalf("result %+v, want ok=%v and three checks", res, tc.ok)
			}
			for i, name := range []string{CheckConnectivity, CheckExitIP, CheckDNSLeak} {
				c, w := res.Checks[i], tc.want[i]
				if c.Name != name || c.Status != w.status || !strings.Contains(c.Reason, w.reason) || c.OK != (w.status == app.CheckPassed) {
					t.Errorf("check %d = %+v, want %s %s containing %q", i, c, name, w.status, w.reason)
				}
				if w.reason == reasonTimedOut && !strings.HasPrefix(c.Reason, reasonTimedOut) {
					t.Errorf("%s reason %q, want %q", name, c.Reason, reasonTimedOut)
				}
			}
		})
	}
}

// TestNewManagerCheckDefaults: without any check URL, the public IP-echo default is used
// (only in production; tests always configure a local one).
func TestNewManagerCheckDefaults(t *testing.T) {
	m := NewManager(Config{})
	defer m.Close()
	if m.cfg.CheckURL != DefaultCheckURL || m.ipEchoURL() != DefaultCheckURL || m.cfg.TestTimeout != TestTimeout {
		t.Fatalf("defaults: %+v", m.cfg)
	}
	m2 := NewManager(Config{CheckServerURL: "http://check.example/"})
	defer m2.Close()
	if m2.cfg.CheckURL != "http://check.example/" || m2.ipEchoURL() != "http://check.example/" {
		t.Fatalf("with a check service: %+v", m2.cfg)
	}
}
