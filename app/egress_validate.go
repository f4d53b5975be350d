package app

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
)

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$`)

// ValidateEgress checks a whole egress IP record and normalises it in place.
func ValidateEgress(e *EgressIP) error {
	if !labelRE.MatchString(e.Label) {
		return invalid("label", "label must be 1-64 characters of letters, digits, '.', '_', '-' or space")
	}
	ip, err := egressconf.ParseAddr(e.IPAddress)
	if err != nil {
		return invalid("ip_address", "ip_address must be an IPv4 or IPv6 address")
	}
	e.IPAddress = ip.String()
	if e.Provider == "" {
		e.Provider = "manual"
	}
	if len(e.Provider) > 64 {
		return invalid("provider", "provider must be at most 64 characters")
	}
	switch e.TunnelType {
	case TunnelWireGuard:
		if len(e.ProxyConfig) > 0 {
			return invalid("proxy_config", "proxy_config is only for tunnel_type proxy")
		}
		return validateWireGuard(e)
	case TunnelProxy:
		if e.WGEndpoint != "" || e.WGPublicKey != "" || e.WGPrivateKey != "" || e.WGPresharedKey != "" ||
			e.WGAllowedIPs != "" || e.WGDNSServer != "" || e.WGPeerAddress != "" {
			return invalid("tunnel_type", "wg_* fields are only for tunnel_type wireguard")
		}
		cfg, err := ValidateProxyConfig(e.ProxyConfig)
		if err != nil {
			return err
		}
		e.ProxyConfig = cfg
		return nil
	default:
		return invalid("tunnel_type", "tunnel_type must be wireguard or proxy")
	}
}

// validateEgress runs app's field checks, then the tunnel room's own (Tunnel.Validate).
func (s *Service) validateEgress(e *EgressIP) error {
	if err := ValidateEgress(e); err != nil {
		return err
	}
	return s.tunnel.Validate(*e)
}

// ValidateWGKey checks a WireGuard key: 32 bytes in standard base64.
func ValidateWGKey(field, k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	// The decoder skips '\r' and '\n' and ignores non-zero padding bits; only the canonical
	// 44-character form is a key WireGuard reads (and safe to write into its config).
	if err != nil || len(b) != 32 || base64.StdEncoding.EncodeToString(b) != k {
		return invalid(field, "%s must be a 32-byte key in base64", field)
	}
	return nil
}

func validateWireGuard(e *EgressIP) error {
	if e.WGEndpoint == "" {
		return invalid("wg_endpoint", "wg_endpoint is required (host:port)")
	}
	if err := validateHostPort("wg_endpoint", e.WGEndpoint); err != nil {
		return err
	}
	if err := ValidateWGKey("wg_public_key", e.WGPublicKey); err != nil {
		return err
	}
	if e.WGPrivateKey == "" {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		e.WGPrivateKey = base64.StdEncoding.EncodeToString(k.Bytes())
	} else if err := ValidateWGKey("wg_private_key", e.WGPrivateKey); err != nil {
		return err
	}
	if e.WGPresharedKey != "" {
		if err := ValidateWGKey("wg_preshared_key", e.WGPresharedKey); err != nil {
			return err
		}
	}
	if e.WGAllowedIPs == "" {
		e.WGAllowedIPs = "0.0.0.0/0, ::/0"
	}
	var parts []string
	for _, c := range strings.Split(e.WGAllowedIPs, ",") {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return invalid("wg_allowed_ips", "wg_allowed_ips must be a comma-separated list of CIDRs")
		}
		parts = append(parts, pfx.String())
	}
	e.WGAllowedIPs = strings.Join(parts, ", ")
	if e.WGDNSServer != "" {
		a, err := egressconf.ParseAddr(e.WGDNSServer)
		if err != nil {
			return invalid("wg_dns_server", "wg_dns_server must be an IP address")
		}
		e.WGDNSServer = a.String()
	}
	if e.WGPeerAddress == "" {
		return invalid("wg_peer_address", "wg_peer_address is required (the tunnel address, e.g. 10.0.0.2/32)")
	}
	var addrs []string
	for _, c := range strings.Split(e.WGPeerAddress, ",") {
		c = strings.TrimSpace(c)
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			a, err2 := netip.ParseAddr(c)
			if err2 != nil {
				return invalid("wg_peer_address", "wg_peer_address must be an address or CIDR")
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		addrs = append(addrs, pfx.String())
	}
	e.WGPeerAddress = strings.Join(addrs, ", ")
	return nil
}

func validateServer(field, host string) error {
	if host == "" {
		return invalid(field, "%s is required", field)
	}
	if !egressconf.IsHost(host) {
		return invalid(field, "%s must be a host name or IP address", field)
	}
	return nil
}

func validatePort(field string, port int) error {
	if port < 1 || port > 65535 {
		return invalid(field, "%s must be a port between 1 and 65535", field)
	}
	return nil
}

func validateHostPort(field, hp string) error {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return invalid(field, "%s must be host:port", field)
	}
	if err := validateServer(field, h); err != nil {
		return err
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return invalid(field, "%s must be host:port", field)
	}
	return validatePort(field, n)
}

// ValidateProxyConfig checks a proxy_config (egressconf.Validate: the required fields of
// each outbound type, and no setting the tunnel does not run) and returns it re-encoded
// compactly.
func ValidateProxyConfig(raw json.RawMessage) (json.RawMessage, error) {
	out, err := egressconf.Validate(raw)
	return out, InvalidProxyConfig(err)
}

// InvalidProxyConfig turns egressconf's refusal of a proxy_config setting (an
// *egressconf.Error) into an invalid *Error naming the setting, for the tunnel room too;
// other errors are returned as they are.
func InvalidProxyConfig(err error) error {
	var ce *egressconf.Error
	if errors.As(err, &ce) {
		return &Error{Kind: KindInvalid, Code: InvalidFieldCode(ce.Field), Field: ce.Field, Message: ce.Message}
	}
	return err
}
