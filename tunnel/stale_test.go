package tunnel

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A tunnel device left in a container by an earlier server (a kernel WireGuard link outlives
// a crash; here a persistent TAP, which a new TUN cannot reuse, stands in for it) is replaced on attach, while any other
// interface is still refused.
func TestAttachReplacesStaleTunnel(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	e := l.egress(labPeerAddr)
	m := l.wgManager(t, WireGuardUserspace)

	c := newNetnsContainer(t)
	sh(t, "ip", "netns", "exec", c.name, "ip", "tuntap", "add", "dev", InterfaceName, "mode", "tap")
	sh(t, "ip", "netns", "exec", c.name, "ip", "link", "set", InterfaceName, "up")
	if err := m.Attach(ctx, "stale", c.pid, e); err != nil {
		t.Fatalf("attach over a stale %s: %v", InterfaceName, err)
	}
	if got := waitExit(t, c, 15*time.Second); got != labExitIP {
		t.Fatalf("container exits as %q, want %s", got, labExitIP)
	}
	if err := m.Detach(ctx, "stale"); err != nil {
		t.Fatal(err)
	}

	// A veth is not a tunnel: it is not removed, and the attach is refused.
	c2 := newNetnsContainer(t)
	sh(t, "ip", "netns", "exec", c2.name, "ip", "link", "add", InterfaceName, "type", "veth", "peer", "name", "x"+InterfaceName)
	err := m.Attach(ctx, "other", c2.pid, e)
	if err == nil || !strings.Contains(err.Error(), InterfaceName) {
		t.Fatalf("attach next to a non-tunnel %s: %v", InterfaceName, err)
	}
	if out := sh(t, "ip", "netns", "exec", c2.name, "ip", "-d", "link", "show", InterfaceName); !strings.Contains(out, "veth") {
		t.Fatalf("the foreign interface was touched: %s", out)
	}
}
