package tui

import (
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The egress detail of a WireGuard egress IP shows the public key of the server's end
// (generated with its private key when none was given), to configure the provider's peer.
func TestEgressDetailShowsLocalPublicKey(t *testing.T) {
	e := newEnv(t)
	s := func(v string) *string { return &v }
	v, err := e.svc.CreateEgress(e.ctx, e.admin, app.EgressInput{Label: s("wg-1"), IPAddress: s("203.0.113.9"),
		TunnelType: s(app.TunnelWireGuard), WGEndpoint: s("vpn.example.net:51820"),
		WGPublicKey: s("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="), WGPeerAddress: s("10.0.0.2/32")})
	if err != nil {
		t.Fatal(err)
	}
	if v.WGLocalPublicKey == "" {
		t.Fatal("no local public key in the service's answer")
	}
	d := e.open(e.admin, 120, 40)
	d.press(":egress", "enter", "enter")
	d.contains("Local pubkey    " + v.WGLocalPublicKey)
	d.contains("Private key     ********")
}
