package app_test

import (
	"errors"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Without a check service (the default configuration) a host flagged unavailable by a
// failed attach must run again once the reconciler attaches its egress: the check that
// cannot run says nothing either way, and nothing else would ever clear the flag.
func TestAttachRecoveryWithoutCheckService(t *testing.T) {
	tun := &hcTunnel{hcAttacher: hcAttacher{attached: map[string]int{}}}
	tun.script(app.EgressTestResult{}, &app.Error{Kind: app.KindUnavailable, Code: "tunnel_check_unconfigured", Message: "no check service"})
	e := newHCEnv(t, tun)
	id, _ := e.createHost(true)

	tun.setAttachErr(errors.New("handshake did not complete"))
	e.rt.Stop(e.ctx, id, 0)
	e.rt.Start(e.ctx, id)
	e.reconcile()
	if h := e.host(id); h.Status != app.HostUnavailable {
		t.Fatalf("after a failed attach: status %q reason %q", h.Status, h.UnavailableReason)
	}

	tun.setAttachErr(nil)
	for i := 0; i < 3; i++ {
		e.reconcile()
		e.clock.Add(recheckDue(app.HostRecheckInterval))
	}
	if h := e.host(id); h.Status != app.HostRunning || h.UnavailableReason != "" {
		t.Fatalf("attached again, no check service: status %q reason %q", h.Status, h.UnavailableReason)
	}
}
