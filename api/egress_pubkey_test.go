package api_test

import (
	"context"
	"encoding/base64"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// pubkeyView is what this test reads of an egress IP answer.
type pubkeyView struct {
	ID           string `json:"id"`
	WGPrivateKey string `json:"wg_private_key"`
	WGLocal      string `json:"wg_local_public_key"`
}

// A WireGuard egress IP whose private key the server generated shows the public half of
// that key (wg_local_public_key) in every answer about it — create, get, list, update — so
// the provider's peer can be configured; the private key itself stays masked.
func TestEgressWireGuardLocalPublicKey(t *testing.T) {
	e := newEnv(t)
	peer, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"label": "wg-gen", "ip_address": "203.0.113.50", "tunnel_type": "wireguard",
		"wg_endpoint": "vpn.example.net:51820", "wg_public_key": peer.PublicKey().String(), "wg_peer_address": "10.0.0.2/32"}
	var created pubkeyView
	e.do("POST", "/v1/admin/egress-ips", e.admin, body, 201, &created)

	var stored app.EgressIP
	if err := e.db.View(context.Background(), func(tx app.Tx) error {
		var err error
		stored, err = tx.GetEgress(created.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	priv, err := wgtypes.ParseKey(stored.WGPrivateKey)
	if err != nil {
		t.Fatalf("stored private key: %v", err)
	}
	want := priv.PublicKey().String()
	check := func(what string, v pubkeyView) {
		t.Helper()
		if v.WGLocal != want {
			t.Errorf("%s: wg_local_public_key %q, want %q (the public key of the generated private key)", what, v.WGLocal, want)
		}
		if v.WGPrivateKey != "********" {
			t.Errorf("%s: wg_private_key %q is not masked", what, v.WGPrivateKey)
		}
	}
	check("create", created)
	var got pubkeyView
	e.do("GET", "/v1/admin/egress-ips/"+created.ID, e.admin, nil, 200, &got)
	check("get", got)
	var list struct {
		EgressIPs []pubkeyView `json:"egress_ips"`
	}
	e.do("GET", "/v1/admin/egress-ips", e.admin, nil, 200, &list)
	if len(list.EgressIPs) != 1 {
		t.Fatalf("list: %+v", list)
	}
	check("list", list.EgressIPs[0])
	var updated pubkeyView
	e.do("PUT", "/v1/admin/egress-ips/"+created.ID, e.admin, map[string]any{"label": "wg-gen-2", "wg_private_key": "********"}, 200, &updated)
	check("update", updated)

	// A private key given by the client: the public key shown is its own.
	own, _ := wgtypes.GeneratePrivateKey()
	body["label"], body["wg_private_key"] = "wg-own", own.String()
	e.do("POST", "/v1/admin/egress-ips", e.admin, body, 201, &got)
	if got.WGLocal != own.PublicKey().String() {
		t.Errorf("given private key: wg_local_public_key %q, want %q", got.WGLocal, own.PublicKey().String())
	}

	// A proxy egress has no WireGuard key, and no such field.
	r := e.do("POST", "/v1/admin/egress-ips", e.admin, map[string]any{"label": "px", "ip_address": "203.0.113.51",
		"tunnel_type": "proxy", "proxy_config": map[string]any{"type": "socks", "server": "198.51.100.7", "server_port": 1080}}, 201, nil)
	var fields map[string]any
	r.json(t, &fields)
	if _, ok := fields["wg_local_public_key"]; ok {
		t.Errorf("a proxy egress answers wg_local_public_key: %s", r.Body)
	}
	if k, err := base64.StdEncoding.DecodeString(want); err != nil || len(k) != 32 {
		t.Errorf("wg_local_public_key %q is not a 32-byte base64 key", want)
	}
}
