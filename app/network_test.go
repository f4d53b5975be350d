package app_test

import (
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// With UNBOUND_HOST_NETWORK=bridge, a bound host's container never has the bridge: binding
// a running bridged host is refused (its network cannot be taken away while it runs), and a
// host bound or unbound while stopped is recreated with the right network on its next start.
func TestBoundHostNeverKeepsTheUnboundNetwork(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(passing(), nil)
	e := newHCEnv(t, tun, func(c *app.Config) { c.UnboundNetwork = "bridge" })
	network := func(id string) string {
		t.Helper()
		rh, err := e.rt.Inspect(e.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return rh.Network
	}

	// Created bound: no network but its tunnel.
	bound, _ := e.createHost(true)
	if n := network(bound); n != "none" {
		t.Fatalf("a host created bound has network %q", n)
	}

	// Created unbound: the bridge. Bound while running: refused, nothing changes.
	id, _ := e.createHost(false)
	if n := network(id); n != "bridge" {
		t.Fatalf("an unbound host has network %q", n)
	}
	_, err := e.svc.CreateBinding(e.ctx, e.admin, app.BindingInput{HostID: id, EgressIPID: e.egress.ID})
	if ae := app.AsError(err); err == nil || ae.Kind != app.KindConflict || ae.Code != "host_running_on_network" {
		t.Fatalf("binding a running bridged host: %v", err)
	}
	if bs, err := e.svc.ListBindings(e.ctx, e.admin); err != nil || len(bs) != 1 {
		t.Fatalf("bindings after the refusal: %v %v", bs, err)
	}

	// Stopped, bound, started: recreated without the bridge before it runs.
	e.action(id, app.TaskHostStop)
	b, err := e.svc.CreateBinding(e.ctx, e.admin, app.BindingInput{HostID: id, EgressIPID: e.egress.ID})
	if err != nil {
		t.Fatal(err)
	}
	task := e.action(id, app.TaskHostStart)
	if _, ok := stepNamed(task, "recreate container with network none"); !ok {
		t.Fatalf("start of a newly bound host did not recreate its container: %+v", task.Steps)
	}
	if n := network(id); n != "none" {
		t.Fatalf("bound host started with network %q", n)
	}

	// Stopped, unbound, started: back on the bridge.
	e.action(id, app.TaskHostStop)
	if err := e.svc.DeleteBinding(e.ctx, e.admin, b.ID); err != nil {
		t.Fatal(err)
	}
	e.action(id, app.TaskHostStart)
	if n := network(id); n != "bridge" {
		t.Fatalf("unbound host started with network %q", n)
	}
	// A start that changes nothing does not recreate.
	e.action(id, app.TaskHostStop)
	if task := e.action(id, app.TaskHostStart); len(task.Steps) > 0 {
		if _, ok := stepNamed(task, "recreate container"); ok {
			t.Fatal("a start with the right network recreated the container")
		}
	}
}
