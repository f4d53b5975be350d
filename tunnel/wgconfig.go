package tunnel

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// PersistentKeepalive is the keepalive interval, in seconds, of every tunnel.
const PersistentKeepalive = 25

// wgConfig is an egress IP's WireGuard settings, parsed: nothing from the record reaches
// the UAPI text or netlink without going through a typed parser.
type wgConfig struct {
	privateKey, publicKey, presharedKey string // hex
	endpointHost                        string
	endpointPort                        uint16
	allowed                             []netip.Prefix
	addrs                               []netip.Prefix
	dns                                 netip.Addr // invalid when not set
	exitIP                              netip.Addr
}

func badEgress(field, format string, args ...any) error {
	return &app.Error{Kind: app.KindInvalid, Code: app.InvalidFieldCode(field), Field: field, Message: fmt.Sprintf(format, args...)}
}

// keyHex converts a base64 WireGuard key to the hex form UAPI wants.
func keyHex(field, k string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	if err != nil || len(b) != 32 {
		return "", badEgress(field, "%s must be a 32-byte key in base64", field)
	}
	return hex.EncodeToString(b), nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("zone in %q", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseWG(e app.EgressIP) (*wgConfig, error) {
	if e.TunnelType != app.TunnelWireGuard {
		return nil, &app.Error{Kind: app.KindUnavailable, Code: app.CodeTunnelTypeUnsupported,
			Message: fmt.Sprintf("tunnel_type %q is not supported by the tunnel manager yet", e.TunnelType)}
	}
	c := &wgConfig{}
	var err error
	if c.exitIP, err = netip.ParseAddr(strings.TrimSpace(e.IPAddress)); err != nil {
		return nil, badEgress("ip_address", "ip_address must be an IP address")
	}
	c.exitIP = c.exitIP.Unmap()
	if e.WGPrivateKey == "" {
		return nil, badEgress("wg_private_key", "wg_private_key is required")
	}
	if c.privateKey, err = keyHex("wg_private_key", e.WGPrivateKey); err != nil {
		return nil, err
	}
	if c.publicKey, err = keyHex("wg_public_key", e.WGPublicKey); err != nil {
		return nil, err
	}
	if e.WGPresharedKey != "" {
		if c.presharedKey, err = keyHex("wg_preshared_key", e.WGPresharedKey); err != nil {
			return nil, err
		}
	}
	host, port, err := net.SplitHostPort(strings.TrimSpace(e.WGEndpoint))
	if err != nil || host == "" || strings.ContainsAny(host, " \t\r\n%") {
		return nil, badEgress("wg_endpoint", "wg_endpoint must be host:port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, badEgress("wg_endpoint", "wg_endpoint must be host:port")
	}
	c.endpointHost, c.endpointPort = host, uint16(p)
	allowed := e.WGAllowedIPs
	if strings.TrimSpace(allowed) == "" {
		allowed = "0.0.0.0/0, ::/0"
	}
	for _, s := range strings.Split(allowed, ",") {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || pfx.Addr().Zone() != "" {
			return nil, badEgress("wg_allowed_ips", "wg_allowed_ips must be a comma-separated list of CIDRs")
		}
		c.allowed = append(c.allowed, pfx.Masked())
	}
	for _, s := range strings.Split(e.WGPeerAddress, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		pfx, err := parsePrefixOrAddr(s)
		if err != nil {
			return nil, badEgress("wg_peer_address", "wg_peer_address must be addresses or CIDRs")
		}
		c.addrs = append(c.addrs, pfx)
	}
	if len(c.addrs) == 0 {
		return nil, badEgress("wg_peer_address", "wg_peer_address is required")
	}
	if s := strings.TrimSpace(e.WGDNSServer); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, badEgress("wg_dns_server", "wg_dns_server must be an IP address")
		}
		c.dns = a.Unmap()
	}
	return c, nil
}

func (c *wgConfig) has(v6 bool) bool { return hasFamily(c.addrs, v6) }

// endpoint resolves the peer endpoint in the server's namespace: UAPI takes only IP:port.
func (c *wgConfig) endpoint(ctx context.Context) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(c.endpointHost); err == nil {
		return netip.AddrPortFrom(a.Unmap(), c.endpointPort), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", c.endpointHost)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve wg_endpoint %q: %w", c.endpointHost, err)
	}
	for _, a := range ips { // prefer IPv4: it is what most providers serve.
		if a.Unmap().Is4() {
			return netip.AddrPortFrom(a.Unmap(), c.endpointPort), nil
		}
	}
	return netip.AddrPortFrom(ips[0], c.endpointPort), nil
}

// uapi renders the device configuration in the WireGuard UAPI text format.
func (c *wgConfig) uapi(ep netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nreplace_peers=true\n", c.privateKey)
	fmt.Fprintf(&b, "public_key=%s\n", c.publicKey)
	if c.presharedKey != "" {
		fmt.Fprintf(&b, "preshared_key=%s\n", c.presharedKey)
	}
	fmt.Fprintf(&b, "endpoint=%s\n", ep.String())
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", PersistentKeepalive)
	b.WriteString("replace_allowed_ips=true\n")
	for _, p := range c.allowed {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p.String())
	}
	return b.String()
}
