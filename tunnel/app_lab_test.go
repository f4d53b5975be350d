package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
	"github.com/vishvananda/netlink"
)

// labRuntime is a container engine whose one container is a lab namespace "container"
// (newNetnsContainer): every host started runs as that process. It outlives the services
// built on it, as Docker outlives a server restart.
type labRuntime struct {
	pid   int
	mu    sync.Mutex
	hosts map[string]*app.RuntimeHost
}

func (r *labRuntime) Ping(context.Context) error { return nil }
func (r *labRuntime) Create(_ context.Context, s app.HostSpec) (app.RuntimeHost, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.Network != "none" {
		return app.RuntimeHost{}, fmt.Errorf("lab containers have network none, not %q", s.Network)
	}
	if h, ok := r.hosts[s.HostID]; ok {
		return *h, nil
	}
	h := &app.RuntimeHost{HostID: s.HostID, UserID: s.UserID, ContainerID: "lab-" + s.HostID, Image: s.Image, State: app.StateCreated}
	r.hosts[s.HostID] = h
	return *h, nil
}
func (r *labRuntime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hosts[id]
	if !ok {
		return &app.RuntimeError{Code: "container_missing", Message: "no container"}
	}
	h.State, h.Pid, h.StartedAt = app.StateRunning, r.pid, time.Now()
	return nil
}
func (r *labRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.hosts[id]; ok {
		h.State, h.Pid = app.StateExited, 0
	}
	return nil
}
func (r *labRuntime) Remove(_ context.Context, id string, _ bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.hosts, id)
	return nil
}
func (r *labRuntime) Inspect(_ context.Context, id string) (app.RuntimeHost, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.hosts[id]; ok {
		return *h, nil
	}
	return app.RuntimeHost{HostID: id, State: app.StateMissing}, nil
}
func (r *labRuntime) List(context.Context) ([]app.RuntimeHost, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []app.RuntimeHost
	for _, h := range r.hosts {
		out = append(out, *h)
	}
	return out, nil
}
func (r *labRuntime) Events(context.Context) (<-chan app.RuntimeEvent, <-chan error) {
	ev, errs := make(chan app.RuntimeEvent), make(chan error)
	close(ev)
	close(errs)
	return ev, errs
}

// labServer is one run of the server: the real tunnel.Manager and app.Service over bbolt.
type labServer struct {
	db     *storage.DB
	m      *Manager
	svc    *app.Service
	cancel context.CancelFunc
	wait   func()
}

func startLabServer(t *testing.T, l *lab, rt *labRuntime, dbPath string, cfg app.Config) *labServer {
	t.Helper()
	db, err := storage.Open(dbPath, storage.Options{MaxBatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	m := NewManager(Config{CheckURL: "http://" + labInetIP + "/", CheckServerURL: "http://" + labInetIP,
		CheckDNSZone: labZone, Logger: log})
	cfg.JWTSecret, cfg.BcryptCost, cfg.Workers = []byte(strings.Repeat("s", 40)), 4, 2
	svc, err := app.New(cfg, app.Deps{Store: db, Runtime: rt, Tunnel: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := svc.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &labServer{db: db, m: m, svc: svc, cancel: cancel, wait: wait}
	t.Cleanup(s.stop)
	return s
}

// stop is the server process ending: background work stops, and its in-process tunnels
// (wireguard-go devices, their TUNs in the container) go with it.
func (s *labServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wait()
	s.m.Close()
	s.db.Close()
	s.cancel = nil
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

// TestServiceEgressLifecycleLab runs the whole loop with the real parts: app.Service over
// bbolt, the real Manager, a lab namespace as the host's container and the lab's WireGuard
// provider. Bind → checked and exiting as the egress IP; provider killed → no traffic at
// all and, by the periodic re-check, the host unavailable with an event; provider back →
// cleared; unbind → no route; server restart → re-attached by Reconcile, traffic again.
// The steps share the lab (whose parts clean up with the test), so they are not subtests.
func TestServiceEgressLifecycleLab(t *testing.T) {
	l := newLab(t)
	c := newNetnsContainer(t)
	rt := &labRuntime{pid: c.pid, hosts: map[string]*app.RuntimeHost{}}
	dbPath := filepath.Join(t.TempDir(), "lab.db")
	srv := startLabServer(t, l, rt, dbPath, app.Config{ReconcileInterval: 200 * time.Millisecond, EgressRecheckInterval: time.Second})
	ctx := context.Background()
	t0 := time.Now()
	step := func(name string) { t.Logf("--- %v: %s", time.Since(t0).Round(time.Millisecond), name) }

	u, err := srv.svc.CreateUser(ctx, labAdmin, app.CreateUserInput{Username: "alice", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	e := l.egress(labPeerAddr)
	e.CreatedAt, e.UpdatedAt = time.Now().UTC(), time.Now().UTC()
	if err := srv.db.Update(ctx, func(tx app.Tx) error { return tx.PutEgress(e) }); err != nil {
		t.Fatal(err)
	}
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
		b, err := srv.svc.CreateBinding(ctx, labAdmin, app.BindingInput{HostID: id, EgressIPID: e.ID})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the bound host's egress check passes", func() (bool, string) {
			h := srv.host(t, id)
			return h.Status == app.HostRunning && h.EgressCheck != nil && h.EgressCheck.OK && h.EgressCheck.EgressIPID == e.ID, hostState(h)
		})
		if got := waitExit(t, c, 15*time.Second); got != labExitIP {
			t.Fatalf("container exits as %q, want %s", got, labExitIP)
		}
		assertOnlyTunnelRoutes(t, c, false)
		return b
	}

	step("bind: checked, exits as the egress IP")
	b := bind()
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

	step("provider killed: no traffic at all, host flagged by the periodic check")
	killed := time.Now()
	l.provDev.Close()
	rx0, tx0, _ := srv.m.TunnelTraffic(id)
	// Nothing gets out: not the check service's address, not the provider's own endpoint
	// (reachable from the server, never from the container), not IPv6.
	assertNoConnectivity(t, c, false)
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if conn, err := c.dial(dctx, "tcp", net.JoinHostPort(l.endpoint.Addr().String(), "22")); err == nil {
		conn.Close()
		t.Fatal("container reached the provider around the tunnel")
	}
	cancel()
	assertOnlyTunnelRoutes(t, c, false)
	eventually(t, 40*time.Second, "the host is marked unavailable with a failure event", func() (bool, string) {
		h := srv.host(t, id)
		if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, "connectivity") {
			return false, hostState(h)
		}
		for _, ev := range srv.events(t, id, "egress.check") {
			if ev.Result == app.ResultFailure && ev.Time.After(killed) && strings.Contains(ev.Message, "after recheck") &&
				strings.Contains(ev.Message, "connectivity FAILED") && strings.Contains(ev.Message, "host marked unavailable") {
				return true, ""
			}
		}
		return false, "no egress.check failure event yet; " + hostState(h)
	})
	t.Logf("flagged %v after the kill: %s", time.Since(killed).Round(time.Millisecond), hostState(srv.host(t, id)))
	// The cheap signal (app.TunnelTraffic) saw it too: the dead tunnel sent, heard nothing.
	if rx, tx, ok := srv.m.TunnelTraffic(id); !ok || tx <= tx0 || rx != rx0 {
		t.Errorf("traffic of the dead tunnel: rx %d→%d tx %d→%d (attached %v), want tx up and rx flat", rx0, rx, tx0, tx, ok)
	}

	step("provider back: the next check clears the host")
	l.restartProvider(t)
	back := time.Now()
	eventually(t, 40*time.Second, "the host is available again", func() (bool, string) {
		h := srv.host(t, id)
		if h.Status != app.HostRunning || h.UnavailableReason != "" || !h.EgressCheck.OK {
			return false, hostState(h)
		}
		evs := srv.events(t, id, "egress.check")
		return evs[0].Result == app.ResultSuccess && strings.Contains(evs[0].Message, "host available again"), evs[0].Message
	})
	t.Logf("cleared %v after the restart", time.Since(back).Round(time.Millisecond))
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
	srv = startLabServer(t, l, rt, dbPath, app.Config{ReconcileInterval: -1, EgressRecheckInterval: time.Second})
	if srv.m.Status(id).Attached {
		t.Fatal("attached before Reconcile")
	}
	if _, err := srv.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := srv.m.Status(id); !st.Attached || st.EgressID != e.ID || st.Pid != c.pid {
		t.Fatalf("Reconcile did not re-attach: %+v", st)
	}
	if got := waitExit(t, c, 15*time.Second); got != labExitIP {
		t.Fatalf("container exits as %q after the restart, want %s", got, labExitIP)
	}
	assertOnlyTunnelRoutes(t, c, false)
	eventually(t, 20*time.Second, "the re-attached egress is checked", func() (bool, string) {
		h := srv.host(t, id)
		return h.Status == app.HostRunning && h.EgressCheck != nil && h.EgressCheck.OK &&
			h.EgressCheck.Trigger == app.CheckTriggerReattach, hostState(h)
	})
	step("done")
}
