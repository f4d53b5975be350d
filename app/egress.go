package app

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// EgressInput is the body of an egress IP creation; on update every field is optional.
type EgressInput struct {
	Label          *string          `json:"label"`
	IPAddress      *string          `json:"ip_address"`
	TunnelType     *string          `json:"tunnel_type"`
	Provider       *string          `json:"provider"`
	WGEndpoint     *string          `json:"wg_endpoint"`
	WGPublicKey    *string          `json:"wg_public_key"`
	WGPrivateKey   *string          `json:"wg_private_key"`
	WGPresharedKey *string          `json:"wg_preshared_key"`
	WGAllowedIPs   *string          `json:"wg_allowed_ips"`
	WGDNSServer    *string          `json:"wg_dns_server"`
	WGPeerAddress  *string          `json:"wg_peer_address"`
	ProxyConfig    *json.RawMessage `json:"proxy_config"`
}

// EgressView is an egress IP as clients see it: secrets masked, bound hosts listed.
type EgressView struct {
	EgressIP
	BoundHosts []string `json:"bound_hosts"`
}

const mask = "********"

func (in EgressInput) apply(e *EgressIP) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	set(&e.Label, in.Label)
	set(&e.IPAddress, in.IPAddress)
	set(&e.TunnelType, in.TunnelType)
	set(&e.Provider, in.Provider)
	set(&e.WGEndpoint, in.WGEndpoint)
	set(&e.WGPublicKey, in.WGPublicKey)
	set(&e.WGPrivateKey, in.WGPrivateKey)
	set(&e.WGPresharedKey, in.WGPresharedKey)
	set(&e.WGAllowedIPs, in.WGAllowedIPs)
	set(&e.WGDNSServer, in.WGDNSServer)
	set(&e.WGPeerAddress, in.WGPeerAddress)
	if in.ProxyConfig != nil {
		if string(bytes.TrimSpace(*in.ProxyConfig)) == "null" {
			e.ProxyConfig = nil
		} else {
			e.ProxyConfig = append(json.RawMessage(nil), *in.ProxyConfig...)
		}
	}
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$`)

// ValidateEgress checks a whole egress IP record and normalises it in place.
func ValidateEgress(e *EgressIP) error {
	if !labelRE.MatchString(e.Label) {
		return invalid("label", "label must be 1-64 characters of letters, digits, '.', '_', '-' or space")
	}
	ip, err := parseZonelessAddr(e.IPAddress)
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
		a, err := parseZonelessAddr(e.WGDNSServer)
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

// parseZonelessAddr parses an IP address without a zone: a zone ("fe80::1%eth0") names a
// local interface, which means nothing for a remote peer, and may hold any character, even
// a newline that would end a line of a tunnel config.
func parseZonelessAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return a, err
}

var hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

func validateServer(field, host string) error {
	if host == "" {
		return invalid(field, "%s is required", field)
	}
	if _, err := parseZonelessAddr(host); err == nil {
		return nil
	}
	if len(host) > 253 || !hostnameRE.MatchString(host) {
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

// ProxyConfig is the part of a sing-box outbound this product understands. Other sing-box
// fields are kept as given.
type ProxyConfig struct {
	Type       string    `json:"type"`
	Server     string    `json:"server"`
	ServerPort int       `json:"server_port"`
	Username   string    `json:"username,omitempty"`
	Password   string    `json:"password,omitempty"`
	Method     string    `json:"method,omitempty"`
	UUID       string    `json:"uuid,omitempty"`
	Security   string    `json:"security,omitempty"`
	AlterID    *int      `json:"alter_id,omitempty"`
	Flow       string    `json:"flow,omitempty"`
	Version    string    `json:"version,omitempty"`
	TLS        *ProxyTLS `json:"tls,omitempty"`
	Network    string    `json:"network,omitempty"`
	Extra      []string  `json:"-"`
	raw        map[string]json.RawMessage
}

// ProxyTLS is the TLS block of an outbound.
type ProxyTLS struct {
	Enabled    bool     `json:"enabled"`
	ServerName string   `json:"server_name,omitempty"`
	Insecure   bool     `json:"insecure,omitempty"`
	ALPN       []string `json:"alpn,omitempty"`
}

var ssMethods = map[string]bool{
	"aes-128-gcm": true, "aes-192-gcm": true, "aes-256-gcm": true,
	"chacha20-ietf-poly1305": true, "xchacha20-ietf-poly1305": true,
	"2022-blake3-aes-128-gcm": true, "2022-blake3-aes-256-gcm": true, "2022-blake3-chacha20-poly1305": true,
	"none": true,
}

var vmessSecurity = map[string]bool{"": true, "auto": true, "none": true, "zero": true,
	"aes-128-gcm": true, "chacha20-poly1305": true, "aes-128-ctr": true}

// ParseProxyConfig decodes a sing-box outbound without validating it.
func ParseProxyConfig(raw json.RawMessage) (ProxyConfig, error) {
	var pc ProxyConfig
	if len(raw) == 0 {
		return pc, invalid("proxy_config", "proxy_config is required for tunnel_type proxy")
	}
	if err := json.Unmarshal(raw, &pc.raw); err != nil || pc.raw == nil {
		return pc, invalid("proxy_config", "proxy_config must be a JSON object")
	}
	if err := json.Unmarshal(raw, &pc); err != nil {
		return pc, invalid("proxy_config", "proxy_config has a field of the wrong type: %s", jsonFieldOf(err))
	}
	return pc, nil
}

func jsonFieldOf(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asTypeError(err, &te); ok && te.Field != "" {
		return te.Field
	}
	return "unknown"
}

// ValidateProxyConfig checks the required fields of each outbound type and returns the
// config re-encoded compactly.
func ValidateProxyConfig(raw json.RawMessage) (json.RawMessage, error) {
	pc, err := ParseProxyConfig(raw)
	if err != nil {
		return nil, err
	}
	if err := validateServer("proxy_config.server", pc.Server); err != nil {
		return nil, err
	}
	if err := validatePort("proxy_config.server_port", pc.ServerPort); err != nil {
		return nil, err
	}
	need := func(field, v string) error {
		if v == "" {
			return invalid("proxy_config."+field, "proxy_config.%s is required for %s", field, pc.Type)
		}
		return nil
	}
	switch pc.Type {
	case "socks":
		if pc.Version != "" && pc.Version != "5" && pc.Version != "4" && pc.Version != "4a" {
			return nil, invalid("proxy_config.version", "proxy_config.version must be 4, 4a or 5")
		}
		if (pc.Username == "") != (pc.Password == "") && pc.Password != "" {
			return nil, invalid("proxy_config.username", "proxy_config.username is required with a password")
		}
	case "http":
		if pc.Password != "" && pc.Username == "" {
			return nil, invalid("proxy_config.username", "proxy_config.username is required with a password")
		}
	case "shadowsocks":
		if err := need("method", pc.Method); err != nil {
			return nil, err
		}
		if !ssMethods[pc.Method] {
			return nil, invalid("proxy_config.method", "proxy_config.method %q is not a supported shadowsocks cipher", pc.Method)
		}
		if pc.Method != "none" {
			if err := need("password", pc.Password); err != nil {
				return nil, err
			}
		}
	case "vmess", "vless":
		if err := need("uuid", pc.UUID); err != nil {
			return nil, err
		}
		if _, err := uuid.Parse(pc.UUID); err != nil {
			return nil, invalid("proxy_config.uuid", "proxy_config.uuid must be a UUID")
		}
		if pc.Type == "vmess" {
			if !vmessSecurity[pc.Security] {
				return nil, invalid("proxy_config.security", "proxy_config.security is not a vmess cipher")
			}
			if pc.AlterID != nil && *pc.AlterID < 0 {
				return nil, invalid("proxy_config.alter_id", "proxy_config.alter_id must be 0 or more")
			}
		} else if pc.Flow != "" && pc.Flow != "xtls-rprx-vision" {
			return nil, invalid("proxy_config.flow", "proxy_config.flow must be empty or xtls-rprx-vision")
		}
	case "trojan":
		if err := need("password", pc.Password); err != nil {
			return nil, err
		}
	case "":
		return nil, invalid("proxy_config.type", "proxy_config.type is required")
	default:
		return nil, invalid("proxy_config.type", "proxy_config.type must be socks, http, shadowsocks, vmess, vless or trojan")
	}
	if pc.TLS != nil && pc.TLS.ServerName != "" {
		if err := validateServer("proxy_config.tls.server_name", pc.TLS.ServerName); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, invalid("proxy_config", "proxy_config must be a JSON object")
	}
	return buf.Bytes(), nil
}

// secretProxyKey reports whether a proxy_config key holds a secret. Keys match in any case,
// as they do when the config is decoded ("Password" is the password too).
func secretProxyKey(k string) bool {
	return strings.EqualFold(k, "password") || strings.EqualFold(k, "uuid")
}

// maskedProxyConfig hides passwords and uuids.
func maskedProxyConfig(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	for k, v := range m {
		if s, ok := v.(string); ok && s != "" && secretProxyKey(k) {
			m[k] = mask
		}
	}
	out, _ := json.Marshal(m)
	return out
}

// unmaskProxyConfig puts the stored secret back where an update sends the mask a view showed,
// so a config that is read, edited and written back keeps its password and uuid.
func unmaskProxyConfig(in, stored json.RawMessage) json.RawMessage {
	var m, old map[string]json.RawMessage
	if json.Unmarshal(in, &m) != nil || m == nil {
		return in
	}
	_ = json.Unmarshal(stored, &old)
	changed := false
	for k, v := range m {
		var s string
		if !secretProxyKey(k) || json.Unmarshal(v, &s) != nil || s != mask {
			continue
		}
		changed = true
		if ov, ok := old[k]; ok {
			m[k] = ov
		} else {
			delete(m, k)
		}
	}
	if !changed {
		return in
	}
	out, err := json.Marshal(m)
	if err != nil {
		return in
	}
	return out
}

func viewEgress(e EgressIP, bound []string) EgressView {
	if e.WGPrivateKey != "" {
		e.WGPrivateKey = mask
	}
	if e.WGPresharedKey != "" {
		e.WGPresharedKey = mask
	}
	e.ProxyConfig = maskedProxyConfig(e.ProxyConfig)
	if bound == nil {
		bound = []string{}
	}
	sort.Strings(bound)
	return EgressView{EgressIP: e, BoundHosts: bound}
}

// EgressValidator is implemented by tunnel rooms that know more about what they can run
// than app's field checks (a proxy setting the outbound does not speak, say). It answers an
// *Error of kind invalid, so such an egress IP is refused with 422 when it is saved rather
// than failing later, when a host starts.
type EgressValidator interface {
	ValidateEgress(e EgressIP) error
}

// validateEgress runs app's field checks, then the tunnel room's own.
func (s *Service) validateEgress(e *EgressIP) error {
	if err := ValidateEgress(e); err != nil {
		return err
	}
	if v, ok := s.tunnel.(EgressValidator); ok {
		return v.ValidateEgress(*e)
	}
	return nil
}

// CreateEgress adds an egress IP.
func (s *Service) CreateEgress(ctx context.Context, p Principal, in EgressInput) (EgressView, error) {
	if err := s.requireAdminWrite(ctx, p, "egress.create"); err != nil {
		return EgressView{}, err
	}
	var e EgressIP
	in.apply(&e)
	if err := s.validateEgress(&e); err != nil {
		return EgressView{}, err
	}
	now := s.Now()
	e.ID, e.CreatedAt, e.UpdatedAt = newID(), now, now
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.PutEgress(e); err != nil {
			return err
		}
		ev := s.event(p, "egress.create", ResultSuccess)
		ev.TargetType, ev.TargetID, ev.Message = "egress_ip", e.ID, e.Label+" "+e.IPAddress
		return tx.AddEvent(&ev)
	})
	if err != nil {
		return EgressView{}, err
	}
	return viewEgress(e, nil), nil
}

func boundHosts(tx Tx, egressID string) ([]string, error) {
	bs, err := tx.ListBindingsByEgress(egressID)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.HostID)
	}
	return out, nil
}

// ListEgress lists egress IPs with secrets masked.
func (s *Service) ListEgress(ctx context.Context, p Principal) ([]EgressView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	out := []EgressView{}
	err := s.store.View(ctx, func(tx Tx) error {
		es, err := tx.ListEgress()
		if err != nil {
			return err
		}
		for _, e := range es {
			b, err := boundHosts(tx, e.ID)
			if err != nil {
				return err
			}
			out = append(out, viewEgress(e, b))
		}
		return nil
	})
	return out, err
}

// GetEgress returns one egress IP with secrets masked.
func (s *Service) GetEgress(ctx context.Context, p Principal, id string) (EgressView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return EgressView{}, err
	}
	var out EgressView
	err := s.store.View(ctx, func(tx Tx) error {
		e, err := tx.GetEgress(id)
		if err != nil {
			return err
		}
		b, err := boundHosts(tx, id)
		out = viewEgress(e, b)
		return err
	})
	return out, err
}

// UpdateEgress applies a partial update; the result is validated whole.
func (s *Service) UpdateEgress(ctx context.Context, p Principal, id string, in EgressInput) (EgressView, error) {
	if err := s.requireAdminWrite(ctx, p, "egress.update"); err != nil {
		return EgressView{}, err
	}
	var out EgressView
	err := s.store.Update(ctx, func(tx Tx) error {
		e, err := tx.GetEgress(id)
		if err != nil {
			return err
		}
		// A masked secret sent back unchanged keeps the stored one.
		for _, f := range []**string{&in.WGPrivateKey, &in.WGPresharedKey} {
			if *f != nil && **f == mask {
				*f = nil
			}
		}
		if in.ProxyConfig != nil {
			pc := unmaskProxyConfig(*in.ProxyConfig, e.ProxyConfig)
			in.ProxyConfig = &pc
		}
		in.apply(&e)
		if in.TunnelType != nil && *in.TunnelType == TunnelProxy {
			e.WGEndpoint, e.WGPublicKey, e.WGPrivateKey, e.WGPresharedKey = "", "", "", ""
			e.WGAllowedIPs, e.WGDNSServer, e.WGPeerAddress = "", "", ""
		}
		if in.TunnelType != nil && *in.TunnelType == TunnelWireGuard {
			e.ProxyConfig = nil
		}
		if err := s.validateEgress(&e); err != nil {
			return err
		}
		e.UpdatedAt = s.Now()
		if err := tx.PutEgress(e); err != nil {
			return err
		}
		b, err := boundHosts(tx, id)
		if err != nil {
			return err
		}
		out = viewEgress(e, b)
		ev := s.event(p, "egress.update", ResultSuccess)
		ev.TargetType, ev.TargetID, ev.Message = "egress_ip", e.ID, e.Label
		return tx.AddEvent(&ev)
	})
	return out, err
}

// DeleteEgress removes an egress IP that no host is bound to.
func (s *Service) DeleteEgress(ctx context.Context, p Principal, id string) error {
	if err := s.requireAdminWrite(ctx, p, "egress.delete"); err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx Tx) error {
		e, err := tx.GetEgress(id)
		if err != nil {
			return err
		}
		b, err := boundHosts(tx, id)
		if err != nil {
			return err
		}
		if len(b) > 0 {
			return conflict("egress_ip_bound", "egress IP is bound to hosts %s; unbind them first", strings.Join(b, ", "))
		}
		if err := tx.DeleteEgress(id); err != nil {
			return err
		}
		ev := s.event(p, "egress.delete", ResultSuccess)
		ev.TargetType, ev.TargetID, ev.Message = "egress_ip", e.ID, e.Label
		return tx.AddEvent(&ev)
	})
}

// TestEgress runs the egress checks of an egress IP from the server.
func (s *Service) TestEgress(ctx context.Context, p Principal, id string) (EgressTestResult, error) {
	if err := s.requireAdminWrite(ctx, p, "egress.test"); err != nil {
		return EgressTestResult{}, err
	}
	var e EgressIP
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		e, err = tx.GetEgress(id)
		return err
	})
	if err != nil {
		return EgressTestResult{}, err
	}
	res, err := s.tunnel.Test(ctx, e)
	ev := s.event(p, "egress.test", ResultSuccess)
	ev.TargetType, ev.TargetID = "egress_ip", e.ID
	switch {
	case err != nil:
		ev.Result, ev.Message = ResultFailure, AsError(err).Message
	case !res.OK:
		ev.Result, ev.Message = ResultFailure, fmt.Sprintf("checks failed in %d ms", res.DurationMS)
	default:
		ev.Message = fmt.Sprintf("all checks passed in %d ms", res.DurationMS)
	}
	s.record(ctx, ev)
	return res, err
}
