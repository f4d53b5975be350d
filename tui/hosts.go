package tui

import (
	"fmt"
	"sort"
	"strconv"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func hostCells(h app.HostView, withUser bool) []string {
	eg := "-"
	if h.Egress != nil {
		eg = h.Egress.Label
		if eg == "" {
			eg = short(h.Egress.ID)
		}
	}
	status := h.Status.String()
	if h.ActiveTaskID != "" {
		status += "*"
	}
	c := []string{h.ShortID}
	if withUser {
		c = append(c, h.Username)
	}
	return append(c, status, h.Image, eg, fmtStamp(h.CreatedAt))
}

func sortHosts(hs []app.HostView) {
	sort.SliceStable(hs, func(i, j int) bool {
		if hs[i].Username != hs[j].Username {
			return hs[i].Username < hs[j].Username
		}
		if hs[i].CreatedAt != hs[j].CreatedAt {
			return hs[i].CreatedAt < hs[j].CreatedAt
		}
		return hs[i].ShortID < hs[j].ShortID
	})
}

func hostsLive(rows []row) bool {
	for _, r := range rows {
		if r.item.(app.HostView).ActiveTaskID != "" {
			return true
		}
	}
	return false
}

func hostLive(_ *Model, r row) bool { return r.item.(app.HostView).ActiveTaskID != "" }

func hostsView() *viewSpec {
	v := &viewSpec{name: "Hosts", cmd: "hosts", aliases: []string{"host", "h"},
		columns: []column{{title: "HOST", min: 8}, {title: "USER", min: 6, max: 20, flex: true},
			{title: "STATUS", min: 8, state: true}, {title: "IMAGE", min: 8, max: 40, flex: true},
			{title: "EGRESS", min: 6, max: 20, flex: true}, {title: "CREATED", min: 10}},
		load: func(m *Model) ([]row, error) {
			hs, err := m.svc.ListHosts(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			sortHosts(hs)
			rows := make([]row, 0, len(hs))
			for _, h := range hs {
				rows = append(rows, row{key: h.ID, item: h, cells: hostCells(h, true)})
			}
			return rows, nil
		},
		detail:   hostDetail,
		live:     hostsLive,
		liveItem: hostLive,
	}
	act := func(key, label, kind, verb, note string) *action {
		return &action{key: key, label: label, write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				h := r.item.(app.HostView)
				return yesNo(verb+" host "+h.ShortID+" of "+h.Username+"?"+note, func(m *Model) tea.Cmd {
					return hostAction(m, h, kind, false)
				})
			}}
	}
	v.actions = []*action{
		{key: "c", label: "create", write: true, run: func(m *Model, _ row) tea.Cmd {
			m.push(createHostForm(m))
			return nil
		}},
		act("s", "start", app.TaskHostStart, "Start", ""),
		act("x", "stop", app.TaskHostStop, "Stop", ""),
		act("r", "rebuild", app.TaskHostRebuild, "Rebuild", " The home volume is kept."),
		{key: "d", label: "delete", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				h := r.item.(app.HostView)
				return &confirmation{question: "Delete host " + h.ShortID + " of " + h.Username + "?",
					choices: []choice{
						{key: "y", label: "delete with home", run: func(m *Model) tea.Cmd { return hostAction(m, h, app.TaskHostDelete, false) }},
						{key: "k", label: "keep home", run: func(m *Model) tea.Cmd { return hostAction(m, h, app.TaskHostDelete, true) }},
						{key: "n", label: "no"},
					}}
			}},
		{key: "w", label: "ssh password", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				h := r.item.(app.HostView)
				return yesNo("Set a new SSH password for host "+h.ShortID+"?", func(m *Model) tea.Cmd {
					return hostAction(m, h, app.TaskHostRotateSSH, false)
				})
			}},
		{key: "b", label: "bind egress", write: true, row: true,
			when: func(r row) bool { return r.item.(app.HostView).Egress == nil },
			run: func(m *Model, r row) tea.Cmd {
				m.push(createBindingForm(m, r.item.(app.HostView).ShortID))
				return nil
			}},
	}
	return v
}

func hostAction(m *Model, h app.HostView, kind string, keepHome bool) tea.Cmd {
	res, err := m.svc.HostAction(m.ctx, m.p, h.ID, kind, keepHome)
	if err != nil {
		m.fail(err)
		return nil
	}
	m.done(kind + " queued for " + h.ShortID + " (task " + short(res.Task.ID) + ")")
	if res.SSHPassword != "" {
		m.showOnce("New SSH password", "The new SSH password of host "+h.ShortID+" (active once the task has run):",
			[]string{res.SSHPassword})
	}
	return nil
}

func hostDetail(m *Model, r row) []string {
	h := r.item.(app.HostView)
	eg := "none"
	if h.Egress != nil {
		eg = h.Egress.Label + " " + h.Egress.IPAddress
	}
	out := []string{
		m.kv("ID", h.ID), m.kv("Host", h.ShortID), m.kv("User", h.Username), m.kv("Status", h.Status.String()),
		m.kv("Desired", h.DesiredState.String()), m.kv("Image", h.Image),
		m.kv("Limits", fmt.Sprintf("%g CPU · %d MB · %d pids", h.CPU, h.MemoryMB, h.PIDs)),
		m.kv("Egress", eg), m.kv("Connect", h.AccessCommand), m.kv("Created", fmtStamp(h.CreatedAt)),
	}
	if h.LastError != "" {
		out = append(out, m.kvStyled("Last error", m.st.errText.Render(sanitize(h.LastError))))
	}
	if h.UnavailableReason != "" {
		out = append(out, m.kvStyled("Unavailable", m.st.errText.Render(sanitize(h.UnavailableReason))))
	}
	if c := h.EgressCheck; c != nil {
		verdict := m.st.okText.Render("passed")
		if !c.OK {
			verdict = m.st.errText.Render("failed")
		}
		out = append(out, m.kvStyled("Egress check", fmt.Sprintf("%s · after %s · %s · %d ms",
			verdict, sanitize(c.Trigger), fmtTime(c.CheckedAt), c.DurationMS)))
	}
	if h.ActiveTaskID != "" {
		out = append(out, "", m.section("Active task"))
		t, err := m.svc.GetTask(m.ctx, m.p, h.ActiveTaskID)
		if err != nil {
			return append(out, m.st.errText.Render(errorText(err)))
		}
		out = append(out, taskLines(m, t)...)
		return out
	}
	if m.p.Role == app.RoleUser {
		return out
	}
	ts, err := m.svc.ListTasks(m.ctx, m.p, app.TaskFilter{HostID: h.ID, Limit: 5})
	if err != nil || len(ts) == 0 {
		return out
	}
	out = append(out, "", m.section("Recent tasks"))
	for _, t := range ts {
		out = append(out, "  "+fmtTime(t.CreatedAt)+"  "+fit(t.Kind, 26)+m.st.state(t.State.String()).Render(t.State.String()))
	}
	return out
}

func createHostForm(m *Model) *formScreen {
	f := m.newForm("Create host",
		m.text("user_id", "User", "username or id"),
		m.text("image", "Image", m.svc.Config().ManagedImage),
		m.text("cpu", "CPU", strconv.FormatFloat(app.DefaultCPU, 'g', -1, 64)),
		m.text("memory_mb", "Memory MB", strconv.Itoa(app.DefaultMemoryMB)),
		m.text("pids", "PIDs", strconv.Itoa(app.DefaultPIDs)),
		m.text("egress_ip_id", "Egress IP", "label, address or id; empty for none"))
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		in := app.CreateHostInput{Image: f.get("image")}
		if v := f.get("user_id"); v != "" {
			in.UserID = m.resolveUser(v)
		}
		if v := f.get("egress_ip_id"); v != "" {
			in.EgressIPID = m.resolveEgress(v)
		}
		if v := f.get("cpu"); v != "" {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				f.fail(formError("cpu", "cpu must be a number of cores"))
				return nil
			}
			in.CPU = &x
		}
		for _, n := range []struct {
			key string
			dst **int64
		}{{"memory_mb", &in.MemoryMB}, {"pids", &in.PIDs}} {
			if v := f.get(n.key); v != "" {
				x, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					f.fail(formError(n.key, n.key+" must be a whole number"))
					return nil
				}
				*n.dst = &x
			}
		}
		res, err := m.svc.CreateHost(m.ctx, m.p, in)
		if err != nil {
			f.fail(err)
			return nil
		}
		m.created(res.Host.ID, "created host "+res.Host.ShortID+" for "+res.Host.Username+" (task "+short(res.Task.ID)+")")
		return nil
	}
	return f
}
