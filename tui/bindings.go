package tui

import (
	"sort"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func bindingsView() *viewSpec {
	v := &viewSpec{name: "Bindings", cmd: "bindings", aliases: []string{"binding", "b"},
		columns: []column{{title: "HOST", min: 8}, {title: "USER", min: 6, max: 20, flex: true},
			{title: "EGRESS", min: 6, max: 24, flex: true}, {title: "ADDRESS", min: 7, max: 39, flex: true},
			{title: "CREATED", min: 10}},
		load: func(m *Model) ([]row, error) {
			bs, err := m.svc.ListBindings(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			hs, err := m.svc.ListHosts(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			es, err := m.svc.ListEgress(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			hosts := map[string]app.HostView{}
			for _, h := range hs {
				hosts[h.ID] = h
			}
			egress := map[string]app.EgressView{}
			for _, e := range es {
				egress[e.ID] = e
			}
			rows := make([]row, 0, len(bs))
			for _, b := range bs {
				h, e := hosts[b.HostID], egress[b.EgressIPID]
				hn := h.ShortID
				if hn == "" {
					hn = short(b.HostID)
				}
				en := e.Label
				if en == "" {
					en = short(b.EgressIPID)
				}
				rows = append(rows, row{key: b.ID, item: bindingItem{b, h, e},
					cells: []string{hn, h.Username, en, e.IPAddress, fmtTime(b.CreatedAt)}})
			}
			sort.SliceStable(rows, func(i, j int) bool {
				a, b := rows[i].cells, rows[j].cells
				if a[1] != b[1] {
					return a[1] < b[1]
				}
				if a[0] != b[0] {
					return a[0] < b[0]
				}
				return a[2] < b[2]
			})
			return rows, nil
		},
		detail: func(m *Model, r row) []string {
			b := r.item.(bindingItem)
			return []string{m.kv("ID", b.ID), m.kv("Host", b.h.ShortID+" ("+b.HostID+")"), m.kv("User", b.h.Username),
				m.kv("Egress IP", b.e.Label+" "+b.e.IPAddress+" ("+b.EgressIPID+")"), m.kv("Tunnel", b.e.TunnelType),
				m.kv("Created", fmtTime(b.CreatedAt))}
		},
	}
	v.actions = []*action{
		{key: "c", label: "create", write: true, run: func(m *Model, _ row) tea.Cmd {
			m.push(createBindingForm(m, ""))
			return nil
		}},
		{key: "d", label: "delete", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				b := r.item.(bindingItem)
				return yesNo("Unbind host "+r.cells[0]+" from egress IP "+r.cells[2]+"?", func(m *Model) tea.Cmd {
					if err := m.svc.DeleteBinding(m.ctx, m.p, b.ID); err != nil {
						m.fail(err)
						return nil
					}
					m.done("unbound host " + r.cells[0])
					return nil
				})
			}},
	}
	return v
}

type bindingItem struct {
	app.Binding
	h app.HostView
	e app.EgressView
}

func createBindingForm(m *Model, host string) *formScreen {
	hf := m.text("host_id", "Host", "short id or id")
	hf.input.SetValue(host)
	f := m.newForm("Create binding", hf, m.text("egress_ip_id", "Egress IP", "label, address or id"))
	if host != "" {
		f.focusField(1)
	}
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		in := app.BindingInput{}
		if v := f.get("host_id"); v != "" {
			in.HostID = m.resolveHost(v)
		}
		if v := f.get("egress_ip_id"); v != "" {
			in.EgressIPID = m.resolveEgress(v)
		}
		b, err := m.svc.CreateBinding(m.ctx, m.p, in)
		if err != nil {
			f.fail(err)
			return nil
		}
		if _, ok := m.stack[0].(*listScreen); ok && m.views[m.cur].cmd == "bindings" {
			m.created(b.ID, "bound host "+f.get("host_id")+" to egress IP "+f.get("egress_ip_id"))
		} else {
			m.popTo(f)
			m.info("bound host " + f.get("host_id") + " to egress IP " + f.get("egress_ip_id"))
		}
		return nil
	}
	return f
}
