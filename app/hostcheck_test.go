package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// hcAttacher is an egress room that attaches; its host checks fail as NoTunnel's do.
type hcAttacher struct {
	app.NoTunnel
	mu        sync.Mutex
	attachErr error
	attached  map[string]int // host → pid
}

func (a *hcAttacher) Test(context.Context, app.EgressIP) (app.EgressTestResult, error) {
	return app.EgressTestResult{}, errors.New("not used")
}
func (a *hcAttacher) Attach(_ context.Context, hostID string, pid int, _ app.EgressIP) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.attachErr != nil {
		delete(a.attached, hostID)
		return a.attachErr
	}
	a.attached[hostID] = pid
	return nil
}
func (a *hcAttacher) Detach(_ context.Context, hostID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.attached, hostID)
	return nil
}
func (a *hcAttacher) setAttachErr(err error) { a.mu.Lock(); a.attachErr = err; a.mu.Unlock() }

// hcTunnel also checks hosts, answering what the test scripted.
type hcTunnel struct {
	hcAttacher
	result app.EgressTestResult
	err    error
	calls  []hcCall
}

type hcCall struct {
	hostID string
	pid    int
	egress string
}

func (t *hcTunnel) CheckHost(_ context.Context, hostID string, pid int, e app.EgressIP) (app.EgressTestResult, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, hcCall{hostID, pid, e.ID})
	return t.result, t.err
}

func (t *hcTunnel) script(res app.EgressTestResult, err error) {
	t.mu.Lock()
	t.result, t.err = res, err
	t.mu.Unlock()
}

func (t *hcTunnel) callCount() int { t.mu.Lock(); defer t.mu.Unlock(); return len(t.calls) }

func (t *hcTunnel) lastCall() hcCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.calls) == 0 {
		return hcCall{}
	}
	return t.calls[len(t.calls)-1]
}

func passing() app.EgressTestResult {
	return app.EgressTestResult{OK: true, DurationMS: 42, Checks: []app.EgressCheck{
		{Name: "connectivity", OK: true, Reason: "answered HTTP 200", DurationMS: 21},
		{Name: "exit_ip", OK: true, Reason: "exits as 203.0.113.10", DurationMS: 11},
		{Name: "dns_leak", OK: true, Reason: "asked only by 203.0.113.10", DurationMS: 10},
	}}
}

func exitMismatch() app.EgressTestResult {
	return app.EgressTestResult{OK: false, DurationMS: 40, Checks: []app.EgressCheck{
		{Name: "connectivity", OK: true, Reason: "answered HTTP 200", DurationMS: 20},
		{Name: "exit_ip", OK: false, Reason: "the container's traffic exits as 198.51.100.7 but the declared ip_address is 203.0.113.10", DurationMS: 12},
		{Name: "dns_leak", OK: true, Reason: "asked only by 198.51.100.7", DurationMS: 8},
	}}
}

func noConnectivity() app.EgressTestResult {
	return app.EgressTestResult{OK: false, DurationMS: 14000, Checks: []app.EgressCheck{
		{Name: "connectivity", OK: false, Reason: "no HTTP answer inside the container: context deadline exceeded", DurationMS: 14000},
		{Name: "exit_ip", Reason: "skipped: the container has no connectivity"},
		{Name: "dns_leak", Reason: "skipped: the container has no connectivity"},
	}}
}

type hcEnv struct {
	t      *testing.T
	ctx    context.Context
	svc    *app.Service
	db     *storage.DB
	rt     *testenv.Runtime
	clock  *testenv.Clock
	admin  app.Principal
	userID string
	egress app.EgressIP
}

// recheckDue is a clock step after which a host checked now is due again with period p:
// its moment (checkSlot) lies within [p/2, 3p/2) of its last check.
func recheckDue(p time.Duration) time.Duration { return p*3/2 + time.Second }

func newHCEnv(t *testing.T, tun app.Tunnel, opts ...func(*app.Config)) *hcEnv {
	t.Helper()
	rt := &testenv.Runtime{}
	env := testenv.NewService(t, testenv.WithRuntime(rt), testenv.WithTunnel(tun), testenv.WithConfig(func(c *app.Config) {
		c.ReconcileInterval, c.Workers = -1, 2
		for _, o := range opts {
			o(c)
		}
	}))
	ctx := env.Start()
	svc, db, clk := env.Service, env.DB, env.Clock
	e := &hcEnv{t: t, ctx: ctx, svc: svc, db: db, rt: rt, clock: clk,
		admin: app.Principal{Username: "system", Role: app.RoleAdmin, Method: "system"}}
	u, err := svc.CreateUser(ctx, e.admin, app.CreateUserInput{Username: "alice", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	e.userID = u.ID
	e.egress = app.EgressIP{ID: "eg-1", Label: "lab", IPAddress: "203.0.113.10", TunnelType: app.TunnelWireGuard,
		CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
	if err := db.Update(ctx, func(tx app.Tx) error { return tx.PutEgress(e.egress) }); err != nil {
		t.Fatal(err)
	}
	return e
}

// createHost creates a running host (bound to the egress when bound) and waits for it.
func (e *hcEnv) createHost(bound bool) (string, app.Task) {
	e.t.Helper()
	in := app.CreateHostInput{UserID: e.userID}
	if bound {
		in.EgressIPID = e.egress.ID
	}
	hc, err := e.svc.CreateHost(e.ctx, e.admin, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return hc.Host.ID, e.wait(hc.Task.ID)
}

func (e *hcEnv) wait(taskID string) app.Task {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	t, err := e.svc.WaitTask(ctx, taskID)
	if err != nil {
		e.t.Fatal(err)
	}
	if t.State != app.TaskSucceeded {
		e.t.Fatalf("task %s %s: %+v", t.Kind, t.State, t.Error)
	}
	return t
}

func (e *hcEnv) action(hostID, kind string) app.Task {
	e.t.Helper()
	res, err := e.svc.HostAction(e.ctx, e.admin, hostID, kind, false)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.wait(res.Task.ID)
}

func (e *hcEnv) host(id string) app.HostView {
	e.t.Helper()
	h, err := e.svc.GetHost(e.ctx, e.admin, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *hcEnv) events(hostID, typ string) []app.Event {
	e.t.Helper()
	page, err := e.svc.ListEvents(e.ctx, e.admin, app.EventQuery{HostID: hostID, Type: typ, Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Events // newest first
}

func (e *hcEnv) reconcile() {
	e.t.Helper()
	if _, err := e.svc.Reconcile(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	e.svc.WaitHostChecks()
}

func stepNamed(t app.Task, prefix string) (app.TaskStep, bool) {
	for _, s := range t.Steps {
		if strings.HasPrefix(s.Name, prefix) {
			return s, true
		}
	}
	return app.TaskStep{}, false
}

func TestHostCheckAfterStart(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun)

	id, task := e.createHost(true)
	t.Run("passing checks leave the host running", func(t *testing.T) {
		h := e.host(id)
		if h.Status != app.HostRunning || h.UnavailableReason != "" {
			t.Fatalf("status %q reason %q", h.Status, h.UnavailableReason)
		}
		if h.EgressCheck == nil || !h.EgressCheck.OK || h.EgressCheck.Trigger != app.CheckTriggerStart ||
			h.EgressCheck.EgressIPID != e.egress.ID || len(h.EgressCheck.Checks) != 3 {
			t.Fatalf("egress_check %+v", h.EgressCheck)
		}
		st, ok := stepNamed(task, "verify egress")
		if !ok || st.State != "done" {
			t.Fatalf("verify step %+v in %+v", st, task.Steps)
		}
		c := tun.lastCall()
		if c.hostID != id || c.pid <= 0 || c.egress != e.egress.ID {
			t.Fatalf("CheckHost called with %+v", c)
		}
		evs := e.events(id, "egress.check")
		if len(evs) != 1 || evs[0].Result != app.ResultSuccess {
			t.Fatalf("events %+v", evs)
		}
		for _, want := range []string{"after start", "passed in 42 ms", "connectivity ok 21 ms", "exit_ip ok 11 ms", "dns_leak ok 10 ms"} {
			if !strings.Contains(evs[0].Message, want) {
				t.Errorf("event message %q lacks %q", evs[0].Message, want)
			}
		}
	})

	t.Run("failing checks mark the host unavailable with the reason", func(t *testing.T) {
		tun.script(exitMismatch(), nil)
		e.action(id, app.TaskHostStop)
		task := e.action(id, app.TaskHostStart)
		if task.State != app.TaskSucceeded {
			t.Fatalf("the start itself must succeed: %+v", task)
		}
		if st, ok := stepNamed(task, "verify egress"); !ok || st.State != "failed" {
			t.Fatalf("verify step %+v", st)
		}
		h := e.host(id)
		if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, "exit_ip") ||
			!strings.Contains(h.UnavailableReason, "198.51.100.7") {
			t.Fatalf("status %q reason %q", h.Status, h.UnavailableReason)
		}
		if h.EgressCheck == nil || h.EgressCheck.OK {
			t.Fatalf("egress_check %+v", h.EgressCheck)
		}
		evs := e.events(id, "egress.check")
		if len(evs) != 2 || evs[0].Result != app.ResultFailure {
			t.Fatalf("events %+v", evs)
		}
		for _, want := range []string{"exit_ip FAILED 12 ms", "198.51.100.7", "host marked unavailable", "connectivity ok 20 ms"} {
			if !strings.Contains(evs[0].Message, want) {
				t.Errorf("event message %q lacks %q", evs[0].Message, want)
			}
		}
	})

	t.Run("reconcile passes do not repeat the check or its event", func(t *testing.T) {
		calls := tun.callCount()
		for i := 0; i < 3; i++ {
			e.reconcile()
		}
		if n := tun.callCount(); n != calls {
			t.Fatalf("reconcile re-checked an already checked container %d times", n-calls)
		}
		if h := e.host(id); h.Status != app.HostUnavailable {
			t.Fatalf("reconcile changed the status to %q", h.Status)
		}
		// After the re-check interval the host is checked again; the same failure stays quiet.
		e.clock.Add(recheckDue(app.HostRecheckInterval))
		e.reconcile()
		e.reconcile()
		if n := tun.callCount(); n != calls+1 {
			t.Fatalf("want exactly one re-check, got %d", n-calls)
		}
		if evs := e.events(id, "egress.check"); len(evs) != 2 {
			t.Fatalf("an unchanged re-check recorded an event: %+v", evs[0])
		}
	})

	t.Run("a later passing check clears it", func(t *testing.T) {
		tun.script(passing(), nil)
		e.clock.Add(recheckDue(app.HostRecheckInterval))
		e.reconcile()
		h := e.host(id)
		if h.Status != app.HostRunning || h.UnavailableReason != "" || h.EgressCheck == nil || !h.EgressCheck.OK ||
			h.EgressCheck.Trigger != app.CheckTriggerRecheck {
			t.Fatalf("status %q reason %q check %+v", h.Status, h.UnavailableReason, h.EgressCheck)
		}
		evs := e.events(id, "egress.check")
		if len(evs) != 3 || evs[0].Result != app.ResultSuccess || !strings.Contains(evs[0].Message, "host available again") {
			t.Fatalf("events %+v", evs)
		}
		// Running and checked: checked again periodically (the default interval), quietly.
		calls := tun.callCount()
		e.reconcile()
		if tun.callCount() != calls {
			t.Fatal("a healthy host was checked again at once")
		}
		e.clock.Add(recheckDue(app.HostRecheckInterval))
		e.reconcile()
		e.reconcile()
		if n := tun.callCount(); n != calls+1 {
			t.Fatalf("want one periodic check of the healthy host, got %d", n-calls)
		}
		if h := e.host(id); h.Status != app.HostRunning || h.EgressCheck.Trigger != app.CheckTriggerRecheck {
			t.Fatalf("status %q check %+v", h.Status, h.EgressCheck)
		}
		if evs := e.events(id, "egress.check"); len(evs) != 3 {
			t.Fatalf("an unchanged periodic check recorded an event: %+v", evs[0])
		}
	})

	t.Run("a restart with passing checks clears it too", func(t *testing.T) {
		tun.script(noConnectivity(), nil)
		e.action(id, app.TaskHostStop)
		e.action(id, app.TaskHostStart)
		h := e.host(id)
		if h.Status != app.HostUnavailable || !strings.HasPrefix(h.UnavailableReason, "egress check failed: connectivity: no HTTP answer") ||
			strings.Contains(h.UnavailableReason, "skipped") {
			t.Fatalf("status %q reason %q", h.Status, h.UnavailableReason)
		}
		tun.script(passing(), nil)
		e.action(id, app.TaskHostStop)
		if h := e.host(id); h.Status != app.HostStopped || h.UnavailableReason != "" {
			t.Fatalf("stopped host: status %q reason %q", h.Status, h.UnavailableReason)
		}
		e.action(id, app.TaskHostStart)
		if h := e.host(id); h.Status != app.HostRunning || h.UnavailableReason != "" {
			t.Fatalf("status %q reason %q", h.Status, h.UnavailableReason)
		}
	})
}

func TestHostCheckOnBindAndUnbind(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(noConnectivity(), nil)
	e := newHCEnv(t, tun)
	id, task := e.createHost(false)
	if _, ok := stepNamed(task, "verify egress"); ok || tun.callCount() != 0 {
		t.Fatal("an unbound host was checked")
	}
	b, err := e.svc.CreateBinding(e.ctx, e.admin, app.BindingInput{HostID: id, EgressIPID: e.egress.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.WaitHostChecks()
	if c := tun.lastCall(); c.hostID != id || c.pid <= 0 {
		t.Fatalf("bind did not check the host: %+v", c)
	}
	h := e.host(id)
	if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, "connectivity") || h.EgressCheck.Trigger != app.CheckTriggerBind {
		t.Fatalf("status %q reason %q check %+v", h.Status, h.UnavailableReason, h.EgressCheck)
	}
	evs := e.events(id, "egress.check")
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "after bind") || !strings.Contains(evs[0].Message, "connectivity FAILED 14000 ms") {
		t.Fatalf("events %+v", evs)
	}
	// The bind check counts as this container's check: reconcile does not repeat it.
	e.reconcile()
	if tun.callCount() != 1 {
		t.Fatalf("reconcile re-checked after bind: %d calls", tun.callCount())
	}
	if err := e.svc.DeleteBinding(e.ctx, e.admin, b.ID); err != nil {
		t.Fatal(err)
	}
	if h := e.host(id); h.Status != app.HostRunning || h.UnavailableReason != "" {
		t.Fatalf("unbound host: status %q reason %q", h.Status, h.UnavailableReason)
	}
}

func TestReconcileAttachFailureRecordedOnce(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun)
	id, _ := e.createHost(true)
	calls := tun.callCount()

	// The container restarts behind our back and its tunnel cannot be attached any more.
	tun.setAttachErr(errors.New("handshake did not complete"))
	e.rt.Stop(e.ctx, id, 0)
	e.rt.Start(e.ctx, id)
	for i := 0; i < 4; i++ {
		e.reconcile()
	}
	evs := e.events(id, "egress.attach")
	if len(evs) != 1 || evs[0].Result != app.ResultFailure || !strings.Contains(evs[0].Message, "handshake did not complete") {
		t.Fatalf("want one attach failure event over four passes, got %+v", evs)
	}
	h := e.host(id)
	if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, "could not be attached: handshake did not complete") {
		t.Fatalf("status %q reason %q", h.Status, h.UnavailableReason)
	}
	if tun.callCount() != calls {
		t.Fatal("checked a host whose tunnel is not attached")
	}

	// A different failure is a new event, once.
	tun.setAttachErr(errors.New("endpoint unreachable"))
	e.reconcile()
	e.reconcile()
	if evs := e.events(id, "egress.attach"); len(evs) != 2 || !strings.Contains(evs[0].Message, "endpoint unreachable") {
		t.Fatalf("events %+v", evs)
	}

	// Success: one event, then a check of the re-attached container clears the host.
	tun.setAttachErr(nil)
	e.reconcile()
	evs = e.events(id, "egress.attach")
	if len(evs) != 3 || evs[0].Result != app.ResultSuccess {
		t.Fatalf("events %+v", evs)
	}
	if tun.callCount() != calls+1 || tun.lastCall().hostID != id {
		t.Fatalf("re-attach was not checked (%d calls)", tun.callCount()-calls)
	}
	h = e.host(id)
	if h.Status != app.HostRunning || h.UnavailableReason != "" || h.EgressCheck.Trigger != app.CheckTriggerReattach {
		t.Fatalf("status %q reason %q check %+v", h.Status, h.UnavailableReason, h.EgressCheck)
	}
	before := len(e.events(id, ""))
	for i := 0; i < 3; i++ {
		e.reconcile()
	}
	if after := len(e.events(id, "")); after != before {
		t.Fatalf("healthy reconcile passes recorded %d events", after-before)
	}

	// The same failure again after a success is recorded again (once).
	tun.setAttachErr(errors.New("endpoint unreachable"))
	e.rt.Stop(e.ctx, id, 0)
	e.rt.Start(e.ctx, id)
	e.reconcile()
	e.reconcile()
	if evs := e.events(id, "egress.attach"); len(evs) != 4 || evs[0].Result != app.ResultFailure {
		t.Fatalf("events %+v", evs)
	}
}

func TestHostCheckErrors(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(app.EgressTestResult{}, &app.Error{Kind: app.KindUnavailable, Code: "tunnel_check_unconfigured", Message: "no check service"})
	e := newHCEnv(t, tun)
	id, task := e.createHost(true)
	st, ok := stepNamed(task, "verify egress")
	if !ok || st.State != "done" || !strings.Contains(st.Name, "skipped") {
		t.Fatalf("step %+v", st)
	}
	if h := e.host(id); h.Status != app.HostRunning {
		t.Fatalf("status %q", h.Status)
	}
	if evs := e.events(id, "egress.check"); len(evs) != 0 {
		t.Fatalf("an unconfigured check recorded %+v", evs)
	}

	// A check that cannot run is an event, but says nothing against the host.
	tun.script(app.EgressTestResult{}, fmt.Errorf("netns of pid 1: no such process"))
	e.action(id, app.TaskHostStop)
	e.action(id, app.TaskHostStart)
	if h := e.host(id); h.Status != app.HostRunning {
		t.Fatalf("status %q", h.Status)
	}
	evs := e.events(id, "egress.check")
	if len(evs) != 1 || evs[0].Result != app.ResultFailure || !strings.Contains(evs[0].Message, "could not be checked") {
		t.Fatalf("events %+v", evs)
	}
}
