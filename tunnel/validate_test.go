package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// Settings the tunnel room cannot run are refused with 422 when an egress IP is saved, not
// when a host starts; settings it runs are accepted.
func TestValidateEgressOnSave(t *testing.T) {
	ctx := context.Background()
	svc := testenv.NewService(t, testenv.WithConfig(func(c *app.Config) { c.TokenHashKey = []byte("k") }),
		testenv.WithTunnel(NewManager(Config{Logger: testenv.DiscardLogger()}))).Service
	proxy := app.TunnelProxy
	admin := app.Principal{UserID: "admin-id", Username: "admin", Role: app.RoleAdmin, Method: "jwt"}
	cases := []struct {
		name, config, field string // field "" means accepted
	}{
		{"plain socks", `{"type":"socks","server":"198.51.100.7","server_port":1080}`, ""},
		{"vless", `{"type":"vless","server":"198.51.100.7","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","tls":{"enabled":true,"server_name":"p.example"}}`, ""},
		{"vless vision", `{"type":"vless","server":"198.51.100.7","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","flow":"xtls-rprx-vision","tls":{"enabled":true}}`, "proxy_config.flow"},
		{"v2ray transport", `{"type":"vmess","server":"198.51.100.7","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","transport":{"type":"ws"}}`, "proxy_config.transport"},
		{"multiplex", `{"type":"trojan","server":"198.51.100.7","server_port":443,"password":"p","multiplex":{"enabled":true}}`, "proxy_config.multiplex"},
		{"reality", `{"type":"vless","server":"198.51.100.7","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","tls":{"enabled":true,"reality":{"enabled":true}}}`, "proxy_config.tls.reality"},
		{"shadowsocks plugin", `{"type":"shadowsocks","server":"198.51.100.7","server_port":8388,"method":"aes-128-gcm","password":"p","plugin":"obfs-local"}`, "proxy_config.plugin"},
		{"shadowsocks 2022 key not base64", `{"type":"shadowsocks","server":"198.51.100.7","server_port":8388,"method":"2022-blake3-aes-128-gcm","password":"not base64!"}`, "proxy_config.password"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			label, ip := "e"+string(rune('a'+i)), "203.0.113.10"
			raw := json.RawMessage(c.config)
			_, err := svc.CreateEgress(ctx, admin, app.EgressInput{Label: &label, IPAddress: &ip, TunnelType: &proxy, ProxyConfig: &raw})
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused a config the tunnel runs: %v", err)
				}
				return
			}
			var ae *app.Error
			if !errors.As(err, &ae) || ae.Kind != app.KindInvalid || ae.Field != c.field {
				t.Fatalf("err = %v, want an invalid error on %s", err, c.field)
			}
			list, err := svc.ListEgress(ctx, admin)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range list {
				if e.Label == label {
					t.Fatalf("a refused egress IP was stored")
				}
			}
		})
	}
}
