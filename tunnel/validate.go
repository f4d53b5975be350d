package tunnel

import (
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
)

// Validate implements app.Tunnel: it parses the egress IP the way Attach and
// Test will, so a setting this room cannot run (a v2ray transport, vless vision, a key that
// does not decode) is refused when the egress IP is saved.
func (m *Manager) Validate(e app.EgressIP) error {
	switch e.TunnelType {
	case app.TunnelProxy:
		// New, not just ParseConfig: building the dialer is where a shadowsocks 2022 key
		// is decoded, and Attach and Test build it the same way.
		_, err := newDialer(e, outbound.Options{})
		return err
	case app.TunnelWireGuard:
		_, err := parseWG(e)
		return err
	}
	return nil
}

// newDialer builds the proxy dialer of e; a proxy_config it refuses is an invalid
// *app.Error naming the setting, as everything this room answers app.
func newDialer(e app.EgressIP, opts outbound.Options) (outbound.Dialer, error) {
	d, err := outbound.New(e.ProxyConfig, opts)
	return d, app.InvalidProxyConfig(err)
}
