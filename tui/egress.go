package tui

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func egressView() *viewSpec {
	v := &viewSpec{name: "Egress IPs", cmd: "egress", aliases: []string{"egressips", "egress-ips", "ips", "ip", "e"},
		columns: []column{{title: "LABEL", min: 6, max: 24, flex: true}, {title: "ADDRESS", min: 7, max: 39, flex: true},
			{title: "TYPE", min: 5}, {title: "PROVIDER", min: 8, max: 16, flex: true}, {title: "BOUND", min: 5},
			{title: "CREATED", min: 10}},
		load: func(m *Model) ([]row, error) {
			es, err := m.svc.ListEgress(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			sort.SliceStable(es, func(i, j int) bool {
				if es[i].Label != es[j].Label {
					return es[i].Label < es[j].Label
				}
				return es[i].IPAddress < es[j].IPAddress
			})
			rows := make([]row, 0, len(es))
			for _, e := range es {
				rows = append(rows, row{key: e.ID, item: e, cells: []string{e.Label, e.IPAddress, e.TunnelType,
					e.Provider, strconv.Itoa(len(e.BoundHosts)), fmtTime(e.CreatedAt)}})
			}
			return rows, nil
		},
		detail: egressDetail,
	}
	v.actions = []*action{
		{key: "c", label: "create", write: true, run: func(m *Model, _ row) tea.Cmd {
			m.push(createEgressForm(m))
			return nil
		}},
		{key: "t", label: "test", write: true, row: true, run: func(m *Model, r row) tea.Cmd {
			e := r.item.(app.EgressView)
			m.info("testing egress " + e.Label + "…")
			svc, ctx, p := m.svc, m.ctx, m.p
			return func() tea.Msg {
				res, err := svc.TestEgress(ctx, p, e.ID)
				return asyncMsg{apply: func(m *Model) tea.Cmd {
					if err != nil {
						m.fail(err)
						return nil
					}
					lines := []string{m.st.title.Render("Egress test of " + e.Label + " " + e.IPAddress), ""}
					verdict := m.st.okText.Render("all checks passed")
					if !res.OK {
						verdict = m.st.errText.Render("checks failed")
					}
					lines = append(lines, verdict+fmt.Sprintf(" in %d ms", res.DurationMS), "")
					for _, c := range res.Checks {
						st := "ok"
						if !c.OK {
							st = "failed"
						}
						line := fmt.Sprintf("  %-14s %s (%d ms)", c.Name, m.st.state(map[bool]string{true: "done", false: "failed"}[c.OK]).Render(st), c.DurationMS)
						if c.Reason != "" {
							line += " " + sanitize(c.Reason)
						}
						lines = append(lines, line)
					}
					m.push(&textScreen{name: "Test " + e.Label, lines: lines, done: "close"})
					return nil
				}}
			}
		}},
		{key: "d", label: "delete", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				e := r.item.(app.EgressView)
				return yesNo("Delete egress IP "+e.Label+" ("+e.IPAddress+")?", func(m *Model) tea.Cmd {
					if err := m.svc.DeleteEgress(m.ctx, m.p, e.ID); err != nil {
						m.fail(err)
						return nil
					}
					m.done("deleted egress IP " + e.Label)
					return nil
				})
			}},
	}
	return v
}

func egressDetail(m *Model, r row) []string {
	e := r.item.(app.EgressView)
	out := []string{m.kv("ID", e.ID), m.kv("Label", e.Label), m.kv("Address", e.IPAddress),
		m.kv("Tunnel", e.TunnelType), m.kv("Provider", e.Provider)}
	if e.TunnelType == app.TunnelWireGuard {
		out = append(out, m.kv("Endpoint", e.WGEndpoint), m.kv("Public key", e.WGPublicKey),
			m.kv("Private key", dash(e.WGPrivateKey)), m.kv("Local pubkey", dash(e.WGLocalPublicKey)), m.kv("Preshared key", dash(e.WGPresharedKey)),
			m.kv("Allowed IPs", e.WGAllowedIPs), m.kv("DNS server", dash(e.WGDNSServer)),
			m.kv("Peer address", e.WGPeerAddress))
	}
	if len(e.ProxyConfig) > 0 {
		out = append(out, m.kv("Proxy config", string(e.ProxyConfig)))
	}
	out = append(out, m.kv("Created", fmtTime(e.CreatedAt)), m.kv("Updated", fmtTime(e.UpdatedAt)), "", m.section("Bound hosts"))
	if len(e.BoundHosts) == 0 {
		return append(out, m.st.dim.Render("none"))
	}
	names := map[string]string{}
	if hs, err := m.svc.ListHosts(m.ctx, m.p); err == nil {
		for _, h := range hs {
			names[h.ID] = h.ShortID + " (" + h.Username + ")"
		}
	}
	for _, id := range e.BoundHosts {
		n := names[id]
		if n == "" {
			n = id
		}
		out = append(out, "  "+sanitize(n))
	}
	return out
}

func createEgressForm(m *Model) *formScreen {
	wg := func(f *formScreen) bool { return f.get("tunnel_type") == app.TunnelWireGuard }
	px := func(f *formScreen) bool { return f.get("tunnel_type") == app.TunnelProxy }
	with := func(fl *field, vis func(*formScreen) bool, help string) *field {
		fl.visible, fl.help = vis, help
		return fl
	}
	f := m.newForm("Create egress IP",
		m.text("label", "Label", "a name, e.g. fra-1"),
		m.text("ip_address", "Address", "the public IPv4 or IPv6 address traffic leaves from"),
		m.pick("tunnel_type", "Tunnel", app.TunnelWireGuard, app.TunnelProxy),
		m.text("provider", "Provider", "manual"),
		with(m.text("wg_endpoint", "Endpoint", "host:port"), wg, ""),
		with(m.text("wg_public_key", "Peer pubkey", "base64 public key of the peer"), wg, ""),
		with(m.text("wg_private_key", "Private key", "empty: generate one"), wg, ""),
		with(m.text("wg_preshared_key", "Preshared", "optional"), wg, ""),
		with(m.text("wg_allowed_ips", "Allowed IPs", "0.0.0.0/0, ::/0"), wg, ""),
		with(m.text("wg_dns_server", "DNS server", "optional"), wg, ""),
		with(m.text("wg_peer_address", "Tunnel addr", "e.g. 10.0.0.2/32"), wg, ""),
		with(m.text("proxy_config", "Proxy config", `{"type":"socks","server":"…","server_port":1080}`), px,
			"a sing-box outbound as JSON: socks, http, shadowsocks, vmess, vless or trojan"),
	)
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		var in app.EgressInput
		ptr := func(key string) *string {
			v := f.get(key)
			return &v
		}
		in.Label, in.IPAddress, in.TunnelType = ptr("label"), ptr("ip_address"), ptr("tunnel_type")
		if v := f.get("provider"); v != "" {
			in.Provider = &v
		}
		if wg(f) {
			in.WGEndpoint, in.WGPublicKey, in.WGPrivateKey = ptr("wg_endpoint"), ptr("wg_public_key"), ptr("wg_private_key")
			in.WGPresharedKey, in.WGAllowedIPs = ptr("wg_preshared_key"), ptr("wg_allowed_ips")
			in.WGDNSServer, in.WGPeerAddress = ptr("wg_dns_server"), ptr("wg_peer_address")
		} else if v := f.get("proxy_config"); v != "" {
			raw := json.RawMessage(v)
			in.ProxyConfig = &raw
		}
		e, err := m.svc.CreateEgress(m.ctx, m.p, in)
		if err != nil {
			f.fail(err)
			return nil
		}
		m.created(e.ID, "created egress IP "+e.Label+" ("+e.IPAddress+", "+e.TunnelType+")")
		return nil
	}
	return f
}
