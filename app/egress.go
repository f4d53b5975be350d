package app

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"sort"
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
	// WGLocalPublicKey is the public key of the server's end of a WireGuard tunnel, the
	// key of wg_private_key (which the server generates when none is given): the
	// provider's peer is configured with it.
	WGLocalPublicKey string   `json:"wg_local_public_key,omitempty"`
	BoundHosts       []string `json:"bound_hosts"`
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
	var local string
	if e.TunnelType == TunnelWireGuard {
		local = wgPublicKey(e.WGPrivateKey)
	}
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
	return EgressView{EgressIP: e, WGLocalPublicKey: local, BoundHosts: bound}
}

// wgPublicKey is the WireGuard public key of a base64 private key, "" when it is none.
func wgPublicKey(private string) string {
	b, err := base64.StdEncoding.DecodeString(private)
	if err != nil {
		return ""
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())
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
			return conflict(CodeEgressIPBound, "egress IP is bound to hosts %s; unbind them first", strings.Join(b, ", "))
		}
		if err := tx.DeleteEgress(id); err != nil {
			return err
		}
		ev := s.event(p, "egress.delete", ResultSuccess)
		ev.TargetType, ev.TargetID, ev.Message = "egress_ip", e.ID, e.Label
		return tx.AddEvent(&ev)
	})
}
