package app

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
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
		return &Error{Kind: KindInvalid, Code: "invalid_" + fieldCode(ce.Field), Field: ce.Field, Message: ce.Message}
	}
	return err
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
		if s, ok := v.(string); ok && s != "" && egressconf.SecretKey(k) {
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
		if !egressconf.SecretKey(k) || json.Unmarshal(v, &s) != nil || s != mask {
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

// validateEgress runs app's field checks, then the tunnel room's own (Tunnel.Validate).
func (s *Service) validateEgress(e *EgressIP) error {
	if err := ValidateEgress(e); err != nil {
		return err
	}
	return s.tunnel.Validate(*e)
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
