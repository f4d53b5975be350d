package tui

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func dashboardView() *viewSpec {
	return &viewSpec{name: "Dashboard", cmd: "dashboard", tab: "dash", aliases: []string{"dash", "stats"},
		page: func(m *Model) screen { return &dashboardScreen{} }}
}

type dashboardScreen struct {
	stats  app.Stats
	events []app.Event
	err    error
}

func (d *dashboardScreen) title(*Model) string { return "Dashboard" }
func (d *dashboardScreen) captures() bool      { return false }
func (d *dashboardScreen) hints(m *Model) []hint {
	return []hint{{"tab", "next view"}, {"ctrl+r", "refresh"}}
}
func (d *dashboardScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd { return nil }
func (d *dashboardScreen) live(*Model) bool {
	return d.err == nil && d.stats.Tasks.Queued+d.stats.Tasks.Running > 0
}

func (d *dashboardScreen) reload(m *Model) {
	d.stats, d.err = m.svc.DashboardStats(m.ctx, m.p)
	if d.err != nil {
		return
	}
	page, err := m.svc.ListEvents(m.ctx, m.p, app.EventQuery{Limit: 30})
	if err != nil {
		d.err = err
		return
	}
	d.events = page.Events
}

func (d *dashboardScreen) body(m *Model, w, h int) []string {
	if d.err != nil {
		return []string{"", m.st.errText.Render(" " + errorText(d.err))}
	}
	s := d.stats
	var statuses []string
	for st, n := range s.Hosts.ByStatus {
		statuses = append(statuses, strconv.Itoa(n)+" "+st.String())
	}
	sort.Slice(statuses, func(i, j int) bool {
		return strings.SplitN(statuses[i], " ", 2)[1] < strings.SplitN(statuses[j], " ", 2)[1]
	})
	hosts := fmt.Sprintf("%d total", s.Hosts.Total)
	if len(statuses) > 0 {
		hosts += " · " + strings.Join(statuses, " · ")
	}
	out := []string{
		"",
		" " + m.kv("Users", fmt.Sprintf("%d total · %d active · %d disabled · %d expired", s.Users.Total, s.Users.Active, s.Users.Disabled, s.Users.Expired)),
		" " + m.kv("Hosts", hosts),
		" " + m.kv("Egress IPs", fmt.Sprintf("%d total · %d bound", s.EgressIPs.Total, s.EgressIPs.Bound)),
		" " + m.kv("Bindings", strconv.Itoa(s.Bindings)),
		" " + m.kv("Tasks", fmt.Sprintf("%d queued · %d running", s.Tasks.Queued, s.Tasks.Running)),
		" " + m.kv("Events (24h)", strconv.Itoa(s.Events24h)),
		"",
		" " + m.section("Recent events"),
	}
	cols := eventColumns()
	rows := eventRows(d.events)
	left := h - len(out)
	if left < 2 {
		return out
	}
	widths := layout(cols, rows, w)
	return append(out, renderTable(m.st, cols, rows, widths, -1, 0, left, w)...)
}
