package tui

import (
	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func ownHostsView() *viewSpec {
	v := &viewSpec{name: "Hosts", cmd: "hosts", aliases: []string{"host", "h"},
		empty: "you have no host yet; ask an administrator to create one",
		columns: []column{{title: "HOST", min: 8}, {title: "STATUS", min: 8, state: true},
			{title: "IMAGE", min: 8, max: 40, flex: true}, {title: "EGRESS", min: 6, max: 20, flex: true},
			{title: "CREATED", min: 10}},
		load: func(m *Model) ([]row, error) {
			hs, err := m.svc.ListOwnHosts(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			sortHosts(hs)
			rows := make([]row, 0, len(hs))
			for _, h := range hs {
				rows = append(rows, row{key: h.ID, item: h, cells: hostCells(h, false)})
			}
			return rows, nil
		},
		detail:   hostDetail,
		live:     hostsLive,
		liveItem: hostLive,
	}
	v.enter = &action{key: "enter", label: "connect", row: true, run: func(m *Model, r row) tea.Cmd {
		if m.opts.Connect != nil {
			return m.connect(r)
		}
		m.result.ConnectHostID = r.key
		return m.quit()
	}}
	v.actions = []*action{
		{key: "i", label: "details", row: true, run: func(m *Model, r row) tea.Cmd {
			d := &detailScreen{spec: v, key: r.key, item: r}
			m.push(d)
			d.reload(m)
			return nil
		}},
		{key: "s", label: "start", row: true, confirm: func(m *Model, r row) *confirmation {
			h := r.item.(app.HostView)
			return yesNo("Start host "+h.ShortID+"?", func(m *Model) tea.Cmd {
				res, err := m.svc.StartOwnHost(m.ctx, m.p, h.ID)
				if err != nil {
					m.fail(err)
					return nil
				}
				m.done("start queued for " + h.ShortID + " (task " + short(res.Task.ID) + ")")
				return nil
			})
		}},
		{key: "r", label: "rebuild", row: true, confirm: func(m *Model, r row) *confirmation {
			h := r.item.(app.HostView)
			return yesNo("Rebuild host "+h.ShortID+"? Your home directory is kept.", func(m *Model) tea.Cmd {
				res, err := m.svc.RebuildOwnHost(m.ctx, m.p, h.ID)
				if err != nil {
					m.fail(err)
					return nil
				}
				m.done("rebuild queued for " + h.ShortID + " (task " + short(res.Task.ID) + ")")
				return nil
			})
		}},
	}
	return v
}
