package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
	"github.com/vishvananda/netlink"
)

// labServer is one run of the server: the real tunnel.Manager and app.Service over bbolt,
// on the system clock.
type labServer struct {
	env     *testenv.Env
	db      *storage.DB
	m       *Manager
	svc     *app.Service
	stopped bool
}

// startLabServer starts a server over the database at dbPath, with the reconcile and
// recheck intervals of cfg. Its runtime rt is a testenv.Runtime whose one container is a lab
// namespace "container" (newNetnsContainer): every host started runs as that process, on
// network none.
func startLabServer(t *testing.T, l *lab, rt *testenv.Runtime, dbPath string, cfg app.Config) *labServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	m := NewManager(Config{CheckURL: "http://" + labInetIP + "/", CheckServerURL: "http://" + labInetIP,
		CheckDNSZone: labZone, ProxyDNSServer: netip.MustParseAddr(labInetIP), Logger: log})
	env := testenv.NewService(t, testenv.WithDBPath(dbPath), testenv.WithRuntime(rt), testenv.WithTunnel(m),
		testenv.WithConfig(func(c *app.Config) {
			c.ReconcileInterval, c.EgressRecheckInterval, c.Workers = cfg.ReconcileInterval, cfg.EgressRecheckInterval, 2
		}),
		testenv.WithDeps(func(d *app.Deps) { d.Clock, d.Logger = app.SystemClock{}, log }))
	env.Start()
	s := &labServer{env: env, db: env.DB, m: m, svc: env.Service}
	t.Cleanup(s.stop)
	return s
}

// stop is the server process ending: background work stops, and its in-process tunnels
// (wireguard-go devices, their TUNs in the container) go with it.
func (s *labServer) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	s.env.Stop()
	s.m.Close()
	s.db.Close()
}

var labAdmin = app.Principal{Username: "system", Role: app.RoleAdmin, Method: "system"}

func (s *labServer) host(t *testing.T, id string) app.HostView {
	t.Helper()
	h, err := s.svc.GetHost(context.Background(), labAdmin, id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (s *labServer) events(t *testing.T, hostID, typ string) []app.Event {
	t.Helper()
	page, err := s.svc.ListEvents(context.Background(), labAdmin, app.EventQuery{HostID: hostID, Type: typ, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return page.Events // newest first
}

// eventually polls cond until it holds, failing with its last account after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, within, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hostState is the account of a host that the polls print.
func hostState(h app.HostView) string {
	s := fmt.Sprintf("status %q reason %q", h.Status, h.UnavailableReason)
	if c := h.EgressCheck; c != nil {
		s += fmt.Sprintf(" check ok=%v trigger=%s at %s %+v", c.OK, c.Trigger, c.CheckedAt.Format("15:04:05.000"), c.Checks)
	}
	return s
}

// restartProvider runs the provider's WireGuard peer again after it was killed.
func (l *lab) restartProvider(t *testing.T) {
	t.Helper()
	h, err := netlink.NewHandleAt(l.provNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eventually(t, 5*time.Second, "the killed provider's interface goes", func() (bool, string) {
		_, err := h.LinkByName("wgp")
		return err != nil, fmt.Sprint(err)
	})
	l.startProvider(t)
}

// labTunnel is one tunnel type of the lifecycle lab: the egress that gives a container its
// way out through the lab's provider, and how to kill and revive the provider's end of it.
type labTunnel struct {
	ifname string           // the tunnel device in the container
	egress app.EgressIP     // created through the service (its ID is the service's)
	kill   func()           // the provider's end dies
	revive func(*testing.T) // and comes back, at the same address with the same keys
}

// egressInput is the creation body of e.
func egressInput(e app.EgressIP) app.EgressInput {
	str := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	in := app.EgressInput{Label: str(e.Label), IPAddress: str(e.IPAddress), TunnelType: str(e.TunnelType),
		WGEndpoint: str(e.WGEndpoint), WGPublicKey: str(e.WGPublicKey), WGPrivateKey: str(e.WGPrivateKey),
		WGPresharedKey: str(e.WGPresharedKey), WGAllowedIPs: str(e.WGAllowedIPs), WGDNSServer: str(e.WGDNSServer),
		WGPeerAddress: str(e.WGPeerAddress)}
	if e.ProxyConfig != nil {
		raw := e.ProxyConfig
		in.ProxyConfig = &raw
	}
	return in
}

// TestServiceEgressLifecycleLab runs the whole loop with the real parts, for every tunnel
// type (WireGuard and each proxy): app.Service over bbolt, the real Manager, a lab namespace
// as the host's container and the lab's provider. Bind → checked, exiting as the egress
// IP, DNS through the tunnel; a wrong declared ip_address → the host check fails exit_ip
// and flags the host, the right one clears it; provider killed → no traffic at all and, by
// the periodic re-check, the host unavailable with an event; provider back → cleared;
// unbind → no route; server restart → re-attached by Reconcile, traffic again.
//
// The types share one lab and run in parallel, each with its own server, database and
// container (the WireGuard provider is the lab's, the proxy servers the subtests' own).
func TestServiceEgressLifecycleLab(t *testing.T) {
	l := newLab(t)
	type tunnelType struct {
		name  string
		setup func(t *testing.T) labTunnel // in the subtest: what it starts ends with it
	}
	types := []tunnelType{{"wireguard", func(t *testing.T) labTunnel {
		return labTunnel{ifname: InterfaceName, egress: l.egress(labPeerAddr), kill: func() { l.provDev.Close() }, revive: l.restartProvider}
	}}}
	for _, pc := range labProxyCases(t) {
		types = append(types, tunnelType{pc.name, func(t *testing.T) labTunnel {
			srv := l.startProxy(t, pc.cfg, pc.tls)
			return labTunnel{ifname: ProxyInterfaceName, egress: proxyEgress("", srv.raw), kill: srv.stop,
				revive: func(t *testing.T) { l.restartProxy(t, srv) }}
		}})
	}
	for _, tc := range types {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			serviceEgressLifecycle(t, l, tc.setup(t))
		})
	}
}

// serviceEgressLifecycle is the loop of TestServiceEgressLifecycleLab for one tunnel type.
func serviceEgressLifecycle(t *testing.T, l *lab, tun labTunnel) {
	c := newNetnsContainer(t)
	rt := &testenv.Runtime{Pid: c.pid, Network: "none"}
	dbPath := filepath.Join(t.TempDir(), "lab.db")
	srv := startLabServer(t, l, rt, dbPath, app.Config{ReconcileInterval: 200 * time.Millisecond, EgressRecheckInterval: time.Second})
	ctx := context.Background()
	t0 := time.Now()
	step := func(name string) { t.Logf("--- %v: %s", time.Since(t0).Round(time.Millisecond), name) }

	u, err := srv.svc.CreateUser(ctx, labAdmin, app.CreateUserInput{Username: "alice", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	eg, err := srv.svc.CreateEgress(ctx, labAdmin, egressInput(tun.egress))
	if err != nil {
		t.Fatal(err)
	}
	eid := eg.ID
	hc, err := srv.svc.CreateHost(ctx, labAdmin, app.CreateHostInput{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	task, err := srv.svc.WaitTask(wctx, hc.Task.ID)
	cancel()
	if err != nil || task.State != app.TaskSucceeded {
		t.Fatalf("create task: %v %+v", err, task)
	}
	id := hc.Host.ID
	assertNoRoutes(t, c) // unbound, network none: nothing

	bind := func() app.Binding {
		t.Helper()
		b, err := srv.svc.CreateBinding(ctx, labAdmin, app.BindingInput{HostID: id, EgressIPID: eid})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the bound host's egress check passes", func() (bool, string) {
			h := srv.host(t, id)
			return h.Status == app.HostRunning && h.EgressCheck != nil && h.EgressCheck.OK && h.EgressCheck.EgressIPID == eid, hostState(h)
		})
		if got := waitExit(t, c, 15*time.Second); got != labExitIP {
			t.Fatalf("container exits as %q, want %s", got, labExitIP)
		}
		assertOnlyRoutesVia(t, c, tun.ifname, false)
		return b
	}
	// failedEvent finds an egress.check failure event after since that says each of want.
	failedEvent := func(since time.Time, want ...string) (bool, string) {
		for _, ev := range srv.events(t, id, "egress.check") {
			if ev.Result != app.ResultFailure || !ev.Time.After(since) {
				continue
			}
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(ev.Message, w)
			}
			if ok {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no egress.check failure event saying %q yet", want)
	}
	// cleared waits for the host to be running again with a passing check, recorded as
	// the newest event.
	cleared := func(what string) {
		t.Helper()
		eventually(t, 40*time.Second, what, func() (bool, string) {
			h := srv.host(t, id)
			if h.Status != app.HostRunning || h.UnavailableReason != "" || h.EgressCheck == nil || !h.EgressCheck.OK {
				return false, hostState(h)
			}
			evs := srv.events(t, id, "egress.check")
			return evs[0].Result == app.ResultSuccess && strings.Contains(evs[0].Message, "host available again"), evs[0].Message
		})
	}

	step("bind: checked, exits as the egress IP, DNS through the tunnel")
	b := bind()
	checkContainerDNS(t, l, c)
	evs := srv.events(t, id, "egress.check")
	// (A reconcile pass may find the fresh tunnel before the bind's own check starts: then
	// that pass's check, "after reattach", is the one.)
	if len(evs) != 1 || evs[0].Result != app.ResultSuccess ||
		!(strings.Contains(evs[0].Message, "after bind") || strings.Contains(evs[0].Message, "after reattach")) {
		t.Fatalf("egress.check events %+v", evs)
	}
	// Periodic checks of the healthy host run (every second here) and stay quiet.
	first := srv.host(t, id).EgressCheck.CheckedAt
	eventually(t, 10*time.Second, "a periodic check of the healthy host", func() (bool, string) {
		h := srv.host(t, id)
		return h.EgressCheck.Trigger == app.CheckTriggerRecheck && h.EgressCheck.CheckedAt.After(first), hostState(h)
	})
	if n := len(srv.events(t, id, "egress.check")); n != 1 {
		t.Fatalf("passing periodic checks recorded %d events", n-1)
	}

	step("a wrong declared ip_address: exit_ip fails the match, the host is flagged")
	const wrongIP = "203.0.113.99"
	attached := srv.m.Status(id).AttachedAt
	changed := time.Now()
	ip := wrongIP
	if _, err := srv.svc.UpdateEgress(ctx, labAdmin, eid, app.EgressInput{IPAddress: &ip}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the host is marked unavailable for its exit IP", func() (bool, string) {
		h := srv.host(t, id)
		if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, CheckExitIP) {
			return false, hostState(h)
		}
		return failedEvent(changed, CheckExitIP+" FAILED", "host marked unavailable")
	})
	h := srv.host(t, id)
	for _, ch := range h.EgressCheck.Checks {
		switch ok := ch.OK; {
		case ch.Name == CheckExitIP && (ok || !strings.Contains(ch.Reason, labExitIP) || !strings.Contains(ch.Reason, wrongIP)):
			t.Errorf("exit_ip with the wrong ip_address: %+v", ch)
		case ch.Name != CheckExitIP && !ok:
			t.Errorf("a wrong ip_address failed %s too: %+v", ch.Name, ch)
		}
	}
	if st := srv.m.Status(id); !st.Attached || !st.AttachedAt.Equal(attached) {
		t.Errorf("changing ip_address rebuilt the tunnel: %+v", st)
	}
	ip = labExitIP
	if _, err := srv.svc.UpdateEgress(ctx, labAdmin, eid, app.EgressInput{IPAddress: &ip}); err != nil {
		t.Fatal(err)
	}
	cleared("the right ip_address clears the host")

	step("provider killed: no traffic at all, host flagged by the periodic check")
	killed := time.Now()
	tun.kill()
	rx0, tx0, _ := srv.m.Traffic(id)
	// Nothing gets out: not the check service's address, not the provider's own address
	// (reachable from the server, never from the container), not IPv6.
	assertNoConnectivity(t, c, false)
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if conn, err := c.dial(dctx, "tcp", net.JoinHostPort(l.endpoint.Addr().String(), "22")); err == nil {
		conn.Close()
		t.Fatal("container reached the provider around the tunnel")
	}
	cancel()
	assertOnlyRoutesVia(t, c, tun.ifname, false)
	eventually(t, 40*time.Second, "the host is marked unavailable with a failure event", func() (bool, string) {
		h := srv.host(t, id)
		if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, CheckConnectivity) {
			return false, hostState(h)
		}
		return failedEvent(killed, "after recheck", CheckConnectivity+" FAILED", "host marked unavailable")
	})
	t.Logf("flagged %v after the kill: %s", time.Since(killed).Round(time.Millisecond), hostState(srv.host(t, id)))
	// The cheap signal (Traffic) saw it too: the dead tunnel sent, heard nothing.
	if rx, tx, ok := srv.m.Traffic(id); !ok || tx <= tx0 || rx != rx0 {
		t.Errorf("traffic of the dead tunnel: rx %d→%d tx %d→%d (attached %v), want tx up and rx flat", rx0, rx, tx0, tx, ok)
	}

	step("provider back: the next check clears the host")
	tun.revive(t)
	back := time.Now()
	cleared("the host is available again")
	t.Logf("cleared %v after the revival", time.Since(back).Round(time.Millisecond))
	if got := waitExit(t, c, 15*time.Second); got != labExitIP {
		t.Fatalf("container exits as %q", got)
	}
	// One event per change of outcome, however many checks ran: the failure (twice when a
	// check was under way at the kill and failed on its later checks first) and the
	// recovery once.
	var outcomes []string
	evs = srv.events(t, id, "egress.check")
	for i := len(evs) - 1; i >= 0; i-- {
		ev := evs[i]
		if !ev.Time.After(killed) {
			continue
		}
		outcome := ev.Result
		for _, n := range []string{CheckConnectivity, CheckExitIP, CheckDNSLeak} {
			if strings.Contains(ev.Message, n+" FAILED") {
				outcome += " " + n
			}
		}
		t.Logf("event after the kill: %s", truncate(ev.Message, 200))
		if len(outcomes) > 0 && outcomes[len(outcomes)-1] == outcome {
			t.Errorf("two events in a row for the same outcome %q", outcome)
		}
		outcomes = append(outcomes, outcome)
	}
	if n := len(outcomes); n < 2 || n > 3 || outcomes[n-1] != app.ResultSuccess ||
		outcomes[n-2] != app.ResultFailure+" "+CheckConnectivity+" "+CheckExitIP+" "+CheckDNSLeak {
		t.Fatalf("events after the kill: %q", outcomes)
	}

	step("unbind: no route at all")
	if err := srv.svc.DeleteBinding(ctx, labAdmin, b.ID); err != nil {
		t.Fatal(err)
	}
	assertNoRoutes(t, c)
	if h := srv.host(t, id); h.Status != app.HostRunning || h.UnavailableReason != "" {
		t.Fatalf("unbound host: %s", hostState(h))
	}
	if srv.m.Status(id).Attached {
		t.Fatal("the manager still holds a tunnel for the unbound host")
	}

	step("bind again, then the server restarts: Reconcile re-attaches, traffic again")
	bind()
	srv.stop() // the server goes, and with it the tunnel: the container has no way out
	assertNoRoutes(t, c)
	restarted := time.Now()
	srv = startLabServer(t, l, rt, dbPath, app.Config{ReconcileInterval: -1, EgressRecheckInterval: time.Second})
	if srv.m.Status(id).Attached {
		t.Fatal("attached before Reconcile")
	}
	if _, err := srv.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := srv.m.Status(id); !st.Attached || st.EgressID != eid || st.Pid != c.pid || st.Interface != tun.ifname {
		t.Fatalf("Reconcile did not re-attach: %+v", st)
	}
	if got := waitExit(t, c, 15*time.Second); got != labExitIP {
		t.Fatalf("container exits as %q after the restart, want %s", got, labExitIP)
	}
	assertOnlyRoutesVia(t, c, tun.ifname, false)
	checkContainerDNS(t, l, c)
	eventually(t, 20*time.Second, "the re-attached egress is checked", func() (bool, string) {
		h := srv.host(t, id)
		return h.Status == app.HostRunning && h.EgressCheck != nil && h.EgressCheck.OK &&
			h.EgressCheck.Trigger == app.CheckTriggerReattach && h.EgressCheck.CheckedAt.After(restarted), hostState(h)
	})
	step("done")
}
