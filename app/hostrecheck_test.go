package app_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func withRecheck(d time.Duration) func(*app.Config) {
	return func(c *app.Config) { c.EgressRecheckInterval = d }
}

// A tunnel that dies under a running container is found by the periodic check, without a
// restart: the host is marked unavailable (one event), unchanged failures stay quiet, and a
// later passing check clears it (one event).
func TestPeriodicRecheckFindsDeadTunnel(t *testing.T) {
	const every = time.Minute
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun, withRecheck(every))
	id, _ := e.createHost(true)
	calls := tun.callCount()

	e.reconcile()
	if tun.callCount() != calls {
		t.Fatal("checked again before its moment")
	}

	tun.script(noConnectivity(), nil) // the tunnel dies; the container keeps running
	e.clock.Add(recheckDue(every))
	e.reconcile()
	e.reconcile()
	if n := tun.callCount(); n != calls+1 {
		t.Fatalf("want one periodic check, got %d", n-calls)
	}
	h := e.host(id)
	if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, "connectivity") ||
		h.EgressCheck.OK || h.EgressCheck.Trigger != app.CheckTriggerRecheck {
		t.Fatalf("status %q reason %q check %+v", h.Status, h.UnavailableReason, h.EgressCheck)
	}
	evs := e.events(id, "egress.check")
	if len(evs) != 2 || evs[0].Result != app.ResultFailure || !strings.Contains(evs[0].Message, "after recheck") ||
		!strings.Contains(evs[0].Message, "host marked unavailable") {
		t.Fatalf("events %+v", evs)
	}

	// Still dead: checked again (an unavailable host at most every interval), no new event.
	e.clock.Add(recheckDue(every))
	e.reconcile()
	if n := tun.callCount(); n != calls+2 {
		t.Fatalf("want a second periodic check, got %d", n-calls)
	}
	if evs := e.events(id, "egress.check"); len(evs) != 2 {
		t.Fatalf("an unchanged failure recorded an event: %+v", evs[0])
	}

	tun.script(passing(), nil) // the provider is back
	e.clock.Add(recheckDue(every))
	e.reconcile()
	if h := e.host(id); h.Status != app.HostRunning || h.UnavailableReason != "" || !h.EgressCheck.OK {
		t.Fatalf("status %q reason %q check %+v", h.Status, h.UnavailableReason, h.EgressCheck)
	}
	evs = e.events(id, "egress.check")
	if len(evs) != 3 || evs[0].Result != app.ResultSuccess || !strings.Contains(evs[0].Message, "host available again") {
		t.Fatalf("events %+v", evs)
	}
}

// With periodic checks disabled a healthy host is left alone, but an unavailable one is
// still retried every HostRecheckInterval, so it recovers.
func TestPeriodicRecheckDisabled(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun, withRecheck(-1))
	id, _ := e.createHost(true)
	calls := tun.callCount()
	for i := 0; i < 3; i++ {
		e.clock.Add(recheckDue(app.HostRecheckInterval))
		e.reconcile()
	}
	if tun.callCount() != calls {
		t.Fatalf("a healthy host was checked %d times with periodic checks disabled", tun.callCount()-calls)
	}
	tun.script(exitMismatch(), nil)
	e.action(id, app.TaskHostStop)
	e.action(id, app.TaskHostStart)
	if h := e.host(id); h.Status != app.HostUnavailable {
		t.Fatalf("status %q", h.Status)
	}
	tun.script(passing(), nil)
	calls = tun.callCount()
	e.clock.Add(recheckDue(app.HostRecheckInterval))
	e.reconcile()
	if tun.callCount() != calls+1 {
		t.Fatal("an unavailable host was not retried")
	}
	if h := e.host(id); h.Status != app.HostRunning {
		t.Fatalf("status %q", h.Status)
	}
}

// Hosts attached together (as after a server restart) are checked again spread over the
// interval, each once per interval, not all in the same reconcile pass.
func TestPeriodicRechecksAreSpread(t *testing.T) {
	const (
		n     = 30
		every = 5 * time.Minute
		pass  = 30 * time.Second
	)
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun, withRecheck(every))
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		id, _ := e.createHost(true)
		ids[id] = true
	}
	// Every host was checked at start, at the same instant. Two periods of passes:
	perHost := map[string]int{}
	var perPass []int
	for k := 1; k <= int(5*every/2/pass); k++ {
		e.clock.Add(pass)
		before := tun.callCount()
		e.reconcile()
		tun.mu.Lock()
		for _, c := range tun.calls[before:] {
			perHost[c.hostID]++
		}
		tun.mu.Unlock()
		perPass = append(perPass, tun.callCount()-before)
	}
	t.Logf("checks per %v pass: %v", pass, perPass)
	for id := range ids {
		if perHost[id] != 2 {
			t.Errorf("host %s checked %d times in 2.5 intervals, want 2", id, perHost[id])
		}
	}
	busy, most := 0, 0
	for _, c := range perPass {
		if c > 0 {
			busy++
		}
		most = max(most, c)
	}
	if most > 12 || busy < 8 {
		t.Fatalf("checks not spread: %v", perPass)
	}
}

func TestCheckSlot(t *testing.T) {
	const p = 5 * time.Minute
	last := time.Date(2026, 11, 23, 12, 0, 7, 0, time.UTC)
	buckets := make([]int, 10)
	for i := 0; i < 1000; i++ {
		id := fmt.Sprintf("host-%d", i)
		s := app.CheckSlot(id, last, p)
		if s.Before(last.Add(p/2)) || !s.Before(last.Add(3*p/2)) {
			t.Fatalf("%s: slot %v is not within [p/2, 3p/2) of %v", id, s, last)
		}
		buckets[int(s.Sub(last.Add(p/2))/(p/10))]++
		// A host checked at (or a little after) its moment keeps it.
		for _, late := range []time.Duration{0, time.Second, p/2 - time.Nanosecond} {
			if got := app.CheckSlot(id, s.Add(late), p); !got.Equal(s.Add(p)) {
				t.Fatalf("%s checked %v late: next %v, want %v", id, late, got, s.Add(p))
			}
		}
	}
	for i, b := range buckets {
		if b < 50 || b > 150 {
			t.Fatalf("slots of 1000 hosts are not spread: bucket %d of %v", i, buckets)
		}
	}
}

// hcTrafficTunnel also counts its tunnels' traffic (Tunnel.Traffic).
type hcTrafficTunnel struct {
	*hcTunnel
	rx, tx atomic.Uint64
}

func (t *hcTrafficTunnel) Traffic(string) (uint64, uint64, bool) {
	return t.rx.Load(), t.tx.Load(), true
}

// A tunnel that sends without receiving anything for StallWindow gets its host checked at
// once, not at its next periodic check; a tunnel that answers does not.
func TestStalledTunnelIsCheckedAtOnce(t *testing.T) {
	tun := &hcTrafficTunnel{hcTunnel: &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun, withRecheck(time.Hour))
	id, _ := e.createHost(true)
	calls := tun.callCount()
	step := func(rx, tx uint64) {
		t.Helper()
		e.clock.Add(30 * time.Second)
		tun.rx.Store(rx)
		tun.tx.Store(tx)
		e.reconcile()
	}
	tun.rx.Store(1000)
	tun.tx.Store(1000)
	e.reconcile() // first look
	step(2000, 2000)
	if tun.callCount() != calls {
		t.Fatal("a tunnel that answers was checked")
	}
	step(2000, 3000) // out, nothing in: stalled
	if tun.callCount() != calls+1 {
		t.Fatalf("a stalled tunnel was not checked (%d checks)", tun.callCount()-calls)
	}
	if h := e.host(id); h.Status != app.HostRunning || h.EgressCheck.Trigger != app.CheckTriggerStall {
		t.Fatalf("status %q check %+v", h.Status, h.EgressCheck)
	}
	if evs := e.events(id, "egress.check"); len(evs) != 1 {
		t.Fatalf("a passing stall check recorded an event: %+v", evs[0])
	}

	tun.script(noConnectivity(), nil)
	step(2000, 4000) // still stalled, but checked 30 s ago
	if tun.callCount() != calls+1 {
		t.Fatal("stall checks are not spaced")
	}
	step(2000, 5000)
	if tun.callCount() != calls+2 {
		t.Fatalf("a stalled tunnel was not checked again after the spacing (%d checks)", tun.callCount()-calls)
	}
	h := e.host(id)
	if h.Status != app.HostUnavailable || !strings.Contains(h.UnavailableReason, "connectivity") {
		t.Fatalf("status %q reason %q", h.Status, h.UnavailableReason)
	}
	evs := e.events(id, "egress.check")
	if len(evs) != 2 || evs[0].Result != app.ResultFailure || !strings.Contains(evs[0].Message, "after stall") {
		t.Fatalf("events %+v", evs)
	}
	// Unavailable: retried on its schedule, not on every stalled look.
	for i := 0; i < 4; i++ {
		step(2000, uint64(6000+1000*i))
	}
	if tun.callCount() != calls+2 {
		t.Fatalf("an unavailable host was checked on stalls (%d checks)", tun.callCount()-calls)
	}
}
