package tui

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// viewSpec is one top-level view: a list of items (or a page), its columns, its detail
// and its actions. Every load and action is one call on app.Service.
type viewSpec struct {
	name    string // "Users"
	cmd     string // "users", for :users
	tab     string // label in the tab bar when shorter than cmd
	aliases []string
	empty   string

	columns  []column
	load     func(m *Model) ([]row, error)
	detail   func(m *Model, r row) []string
	live     func(rows []row) bool      // the list refreshes itself while true
	liveItem func(m *Model, r row) bool // the detail refreshes itself while true
	enter    *action                    // enter on a row; nil opens the detail
	actions  []*action                  // keys on the list and the detail
	page     func(m *Model) screen      // a view that is not a list
}

func (v *viewSpec) tabName() string {
	if v.tab != "" {
		return v.tab
	}
	return v.cmd
}

func (v *viewSpec) open(m *Model) screen {
	if v.page != nil {
		return v.page(m)
	}
	return &listScreen{spec: v}
}

// action is a key that does something, usually to the selected row.
type action struct {
	key, label string
	// write marks an administrative change: hidden from, and refused to, principals whose
	// credential cannot write (Principal.CanWrite; the service would answer 403).
	write   bool
	row     bool
	when    func(r row) bool
	confirm func(m *Model, r row) *confirmation
	run     func(m *Model, r row) tea.Cmd
}

type confirmation struct {
	question string
	choices  []choice
}

func yesNo(q string, run func(m *Model) tea.Cmd) *confirmation {
	return &confirmation{question: q, choices: []choice{{key: "y", label: "yes", run: run}, {key: "n", label: "no"}}}
}

func viewsFor(p app.Principal) []*viewSpec {
	if p.Role == app.RoleAdmin || p.Role == app.RoleViewer {
		return []*viewSpec{dashboardView(), usersView(), hostsView(), egressView(), bindingsView(),
			allTokensView(), tasksView(), eventsView(), keysView(), passwordView()}
	}
	return []*viewSpec{ownHostsView(), keysView(), ownTokensView(), passwordView()}
}

// adminViews are every view a door can name; a user naming one gets the service's refusal.
func adminViews() []*viewSpec {
	return viewsFor(app.Principal{Role: app.RoleAdmin})
}

// ---------------------------------------------------------------- formatting

const (
	timeLayout    = "2006-01-02 15:04"
	secondsLayout = "2006-01-02 15:04:05"
)

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

func fmtTimeP(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return fmtTime(*t)
}

// fmtDate shows an access token's expiry: tokens stop at 00:00 UTC of a day.
func fmtDate(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.DateOnly)
}

func fmtStamp(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return fmtTime(t)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// kv renders a detail line of a plain value (control characters are neutralised).
func (m *Model) kv(label, value string) string {
	return m.kvStyled(label, sanitize(value))
}

// kvStyled renders a detail line whose value is already sanitised and styled.
func (m *Model) kvStyled(label, value string) string {
	return m.st.label.Render(fit(label, 16)) + value
}

func (m *Model) section(title string) string {
	return m.st.title.Render(title)
}

// created moves the list cursor to a new item and tells what happened.
func (m *Model) created(key, msg string) {
	m.stack = m.stack[:1]
	m.reloadAll()
	if l, ok := m.stack[0].(*listScreen); ok {
		if l.filter != "" {
			l.setFilter("")
		}
		for i, r := range l.rows {
			if r.key == key {
				l.cursor = i
			}
		}
	}
	m.info(msg)
}

// done reloads everything after a change and tells what happened.
func (m *Model) done(msg string) {
	m.reloadAll()
	m.info(msg)
}

// showOnce pushes a page holding a secret the service returns only once.
func (m *Model) showOnce(title, what string, value []string) {
	lines := []string{m.st.title.Render(title), "", what, "It is shown only this once; copy it now.", ""}
	lines = append(lines, value...)
	m.push(&textScreen{name: title, lines: lines, done: "done"})
}

func formError(field, msg string) error {
	return &app.Error{Kind: app.KindInvalid, Code: "invalid_" + field, Field: field, Message: msg}
}

// ---------------------------------------------------------------- dashboard

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
		statuses = append(statuses, strconv.Itoa(n)+" "+st)
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

// ---------------------------------------------------------------- users

func usersView() *viewSpec {
	v := &viewSpec{name: "Users", cmd: "users", aliases: []string{"user", "u"},
		columns: []column{{title: "USERNAME", min: 8, max: 30, flex: true}, {title: "ROLE", min: 6},
			{title: "STATUS", min: 8, state: true}, {title: "EXPIRES", min: 10}, {title: "CREATED", min: 10}},
		load: func(m *Model) ([]row, error) {
			us, err := m.svc.ListUsers(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			sort.Slice(us, func(i, j int) bool { return us[i].Username < us[j].Username })
			rows := make([]row, 0, len(us))
			for _, u := range us {
				rows = append(rows, row{key: u.ID, item: u, cells: []string{u.Username, u.Role, u.Status,
					fmtTimeP(u.ExpiresAt, "never"), fmtTime(u.CreatedAt)}})
			}
			return rows, nil
		},
		detail: userDetail,
	}
	v.actions = []*action{
		{key: "c", label: "create", write: true, run: func(m *Model, _ row) tea.Cmd {
			m.push(createUserForm(m))
			return nil
		}},
		{key: "s", label: "status", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				u := r.item.(app.UserView)
				to, verb := app.UserDisabled, "Disable"
				if u.Status != app.UserActive {
					to, verb = app.UserActive, "Enable"
				}
				return yesNo(verb+" user "+u.Username+"?", func(m *Model) tea.Cmd {
					_, err := m.svc.PatchUser(m.ctx, m.p, u.ID, app.PatchUserInput{Status: &to})
					if err != nil {
						m.fail(err)
						return nil
					}
					m.done("user " + u.Username + " is now " + to)
					return nil
				})
			}},
		{key: "p", label: "password", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				u := r.item.(app.UserView)
				return yesNo("Set a new random password for "+u.Username+"? Their sessions end.", func(m *Model) tea.Cmd {
					res, err := m.svc.RotatePassword(m.ctx, m.p, u.ID)
					if err != nil {
						m.fail(err)
						return nil
					}
					m.done("new password set for " + u.Username)
					m.showOnce("New password", "The new password of "+res.Username+":", []string{res.Password})
					return nil
				})
			}},
		{key: "x", label: "expiry", write: true, row: true, run: func(m *Model, r row) tea.Cmd {
			m.push(expiryForm(m, r.item.(app.UserView)))
			return nil
		}},
		{key: "d", label: "delete", write: true, row: true,
			confirm: func(m *Model, r row) *confirmation {
				u := r.item.(app.UserView)
				return yesNo("Delete user "+u.Username+" with all their hosts, keys and tokens?", func(m *Model) tea.Cmd {
					if err := m.svc.DeleteUser(m.ctx, m.p, u.ID); err != nil {
						m.fail(err)
						return nil
					}
					m.done("deleted user " + u.Username)
					return nil
				})
			}},
	}
	return v
}

func userDetail(m *Model, r row) []string {
	u := r.item.(app.UserView)
	out := []string{
		m.kv("ID", u.ID), m.kv("Username", u.Username), m.kv("Role", u.Role), m.kv("Status", u.Status),
		m.kv("Expires", fmtTimeP(u.ExpiresAt, "never")), m.kv("Created", fmtTime(u.CreatedAt)),
		m.kv("Updated", fmtTime(u.UpdatedAt)), "", m.section("SSH keys"),
	}
	keys, err := m.svc.ListSSHKeys(m.ctx, m.p, u.ID)
	if err != nil {
		out = append(out, m.st.errText.Render(errorText(err)))
	} else if len(keys) == 0 {
		out = append(out, m.st.dim.Render("none"))
	}
	for _, k := range keys {
		out = append(out, "  "+k.Type+"  "+k.Fingerprint+"  "+sanitize(k.Name))
	}
	out = append(out, "", m.section("Hosts"))
	hosts, err := m.svc.ListHosts(m.ctx, m.p)
	if err != nil {
		return append(out, m.st.errText.Render(errorText(err)))
	}
	n := 0
	for _, h := range hosts {
		if h.UserID == u.ID {
			n++
			out = append(out, "  "+h.ShortID+"  "+h.Status+"  "+sanitize(h.Image))
		}
	}
	if n == 0 {
		out = append(out, m.st.dim.Render("none"))
	}
	return out
}

// parseDate reads an optional YYYY-MM-DD into the *time.Time the service takes.
func parseDate(field, v string) (*time.Time, error) {
	if v == "" || v == "never" {
		return nil, nil
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return nil, formError(field, field+" must be a date YYYY-MM-DD, or empty for never")
	}
	return &t, nil
}

func createUserForm(m *Model) *formScreen {
	exp := m.text("expires_at", "Expires", "YYYY-MM-DD, empty for never")
	f := m.newForm("Create user",
		m.text("username", "Username", "3-50 of a-z 0-9 . _ -"),
		m.secret("password", "Password"),
		m.pick("role", "Role", app.RoleUser, app.RoleViewer, app.RoleAdmin),
		exp)
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		at, err := parseDate("expires_at", f.get("expires_at"))
		if err != nil {
			f.fail(err)
			return nil
		}
		u, err := m.svc.CreateUser(m.ctx, m.p, app.CreateUserInput{Username: f.get("username"),
			Password: f.raw("password"), Role: f.get("role"), ExpiresAt: at})
		if err != nil {
			f.fail(err)
			return nil
		}
		m.created(u.ID, "created user "+u.Username+" ("+u.Role+")")
		return nil
	}
	return f
}

func expiryForm(m *Model, u app.UserView) *formScreen {
	exp := m.text("expires_at", "Expires", "YYYY-MM-DD, empty for never")
	if u.ExpiresAt != nil {
		exp.input.SetValue(u.ExpiresAt.UTC().Format(time.DateOnly))
	}
	f := m.newForm("Expiry of "+u.Username, exp)
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		at, err := parseDate("expires_at", f.get("expires_at"))
		if err != nil {
			f.fail(err)
			return nil
		}
		v, err := m.svc.SetExpiry(m.ctx, m.p, u.ID, at)
		if err != nil {
			f.fail(err)
			return nil
		}
		m.popTo(f)
		m.info("user " + v.Username + " expires: " + fmtTimeP(v.ExpiresAt, "never"))
		return nil
	}
	return f
}

// ---------------------------------------------------------------- hosts

func hostCells(h app.HostView, withUser bool) []string {
	eg := "-"
	if h.Egress != nil {
		eg = h.Egress.Label
		if eg == "" {
			eg = short(h.Egress.ID)
		}
	}
	status := h.Status
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
		m.kv("ID", h.ID), m.kv("Host", h.ShortID), m.kv("User", h.Username), m.kv("Status", h.Status),
		m.kv("Desired", h.DesiredState), m.kv("Image", h.Image),
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
		out = append(out, "  "+fmtTime(t.CreatedAt)+"  "+fit(t.Kind, 26)+m.st.state(t.State).Render(t.State))
	}
	return out
}

func taskLines(m *Model, t app.Task) []string {
	out := []string{m.kv("Task", t.ID), m.kv("Kind", t.Kind), m.kvStyled("State", m.st.state(t.State).Render(t.State))}
	if t.Error != nil {
		out = append(out, m.kvStyled("Error", m.st.errText.Render(sanitize(t.Error.Code+": "+t.Error.Message))))
	}
	if len(t.Steps) == 0 && (t.State == app.TaskQueued || t.State == app.TaskRunning) {
		out = append(out, m.st.dim.Render("  waiting for a worker…"))
	}
	for i, s := range t.Steps {
		mark := map[string]string{"done": "✓", "failed": "✗", "running": "…"}[s.State]
		if mark == "" {
			mark = " "
		}
		line := fmt.Sprintf("  %s %d. %s", mark, i+1, sanitize(s.Name))
		if s.End != nil {
			line += m.st.dim.Render(fmt.Sprintf(" (%s)", s.End.Sub(s.At).Round(time.Millisecond)))
		}
		out = append(out, m.st.state(s.State).Render(line))
	}
	return out
}

func (m *Model) resolveUser(v string) string {
	us, err := m.svc.ListUsers(m.ctx, m.p)
	if err != nil {
		return v
	}
	for _, u := range us {
		if u.Username == v || u.ID == v {
			return u.ID
		}
	}
	return v
}

func (m *Model) resolveEgress(v string) string {
	es, err := m.svc.ListEgress(m.ctx, m.p)
	if err != nil {
		return v
	}
	for _, e := range es {
		if e.Label == v || e.IPAddress == v || e.ID == v {
			return e.ID
		}
	}
	return v
}

func (m *Model) resolveHost(v string) string {
	hs, err := m.svc.ListHosts(m.ctx, m.p)
	if err != nil {
		return v
	}
	for _, h := range hs {
		if h.ShortID == v || h.ID == v {
			return h.ID
		}
	}
	return v
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

// ---------------------------------------------------------------- own hosts (users)

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

// ---------------------------------------------------------------- egress IPs

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
			m.kv("Private key", dash(e.WGPrivateKey)), m.kv("Preshared key", dash(e.WGPresharedKey)),
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

// ---------------------------------------------------------------- bindings

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

// ---------------------------------------------------------------- access tokens

func tokenState(t app.TokenView) string {
	switch {
	case t.Expired:
		return "expired"
	case !t.Active:
		return "inactive"
	}
	return "active"
}

func tokenAccess(t app.TokenView) string {
	if t.Write {
		return "rw"
	}
	return "ro"
}

func sortTokens(ts []app.TokenView, users map[string]string) {
	sort.SliceStable(ts, func(i, j int) bool {
		if users[ts[i].UserID] != users[ts[j].UserID] {
			return users[ts[i].UserID] < users[ts[j].UserID]
		}
		if ts[i].Name != ts[j].Name {
			return ts[i].Name < ts[j].Name
		}
		return ts[i].CreatedAt.Before(ts[j].CreatedAt)
	})
}

func tokenDetail(m *Model, r row) []string {
	t := r.item.(app.TokenView)
	return []string{m.kv("ID", t.ID), m.kv("Name", t.Name), m.kv("Value", "ccp_"+strings.Repeat("·", 6)+t.Hint),
		m.kv("Access", map[bool]string{true: "read-write", false: "read-only"}[t.Write]),
		m.kv("State", tokenState(t)), m.kv("Expires", fmtTimeP(t.ExpiresAt, "never")),
		m.kv("Last used", fmtTimeP(t.LastUsedAt, "never")+" "+t.LastUsedIP),
		m.kv("Created", fmtTime(t.CreatedAt)), m.kv("Updated", fmtTime(t.UpdatedAt))}
}

func allTokensView() *viewSpec {
	v := &viewSpec{name: "Access Tokens", cmd: "tokens", aliases: []string{"token", "t", "accesstokens"},
		columns: []column{{title: "USER", min: 6, max: 20, flex: true}, {title: "NAME", min: 6, max: 24, flex: true},
			{title: "VALUE", min: 5}, {title: "ACCESS", min: 6}, {title: "STATE", min: 8, state: true},
			{title: "EXPIRES", min: 10}, {title: "LAST USED", min: 10}},
		load: func(m *Model) ([]row, error) {
			ts, err := m.svc.ListAllTokens(m.ctx, m.p, "")
			if err != nil {
				return nil, err
			}
			us, err := m.svc.ListUsers(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			names := map[string]string{}
			for _, u := range us {
				names[u.ID] = u.Username
			}
			sortTokens(ts, names)
			rows := make([]row, 0, len(ts))
			for _, t := range ts {
				rows = append(rows, row{key: t.ID, item: t, cells: []string{names[t.UserID], t.Name, t.Hint,
					tokenAccess(t), tokenState(t), fmtDate(t.ExpiresAt, "never"), fmtTimeP(t.LastUsedAt, "never")}})
			}
			return rows, nil
		},
		detail: tokenDetail,
	}
	v.actions = []*action{
		{key: "c", label: "create", write: true, run: func(m *Model, _ row) tea.Cmd {
			m.push(createTokenForm(m))
			return nil
		}},
		{key: "d", label: "revoke", write: true, row: true, confirm: revokeToken(true)},
	}
	return v
}

func ownTokensView() *viewSpec {
	v := &viewSpec{name: "Access Tokens", cmd: "tokens", aliases: []string{"token", "t", "accesstokens"},
		empty: "no access tokens; press c to create one for the REST API",
		columns: []column{{title: "NAME", min: 6, max: 24, flex: true}, {title: "VALUE", min: 5},
			{title: "ACCESS", min: 6}, {title: "STATE", min: 8, state: true}, {title: "EXPIRES", min: 10},
			{title: "LAST USED", min: 10}, {title: "CREATED", min: 10}},
		load: func(m *Model) ([]row, error) {
			ts, err := m.svc.ListTokens(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			sortTokens(ts, nil)
			rows := make([]row, 0, len(ts))
			for _, t := range ts {
				rows = append(rows, row{key: t.ID, item: t, cells: []string{t.Name, t.Hint, tokenAccess(t),
					tokenState(t), fmtDate(t.ExpiresAt, "never"), fmtTimeP(t.LastUsedAt, "never"), fmtTime(t.CreatedAt)}})
			}
			return rows, nil
		},
		detail: tokenDetail,
	}
	v.actions = []*action{
		{key: "c", label: "create", run: func(m *Model, _ row) tea.Cmd {
			m.push(createTokenForm(m))
			return nil
		}},
		{key: "a", label: "(de)activate", row: true, run: func(m *Model, r row) tea.Cmd {
			t := r.item.(app.TokenView)
			active := !t.Active
			if _, err := m.svc.UpdateToken(m.ctx, m.p, t.ID, app.TokenInput{Active: &active}); err != nil {
				m.fail(err)
				return nil
			}
			m.done("token " + t.Name + " is now " + map[bool]string{true: "active", false: "inactive"}[active])
			return nil
		}},
		{key: "d", label: "revoke", row: true, confirm: revokeToken(false)},
	}
	return v
}

func revokeToken(admin bool) func(m *Model, r row) *confirmation {
	return func(m *Model, r row) *confirmation {
		t := r.item.(app.TokenView)
		return yesNo("Revoke access token "+t.Name+" (…"+strings.TrimPrefix(t.Hint, "…")+")?", func(m *Model) tea.Cmd {
			if err := m.svc.RevokeToken(m.ctx, m.p, t.ID, admin); err != nil {
				m.fail(err)
				return nil
			}
			m.done("revoked access token " + t.Name)
			return nil
		})
	}
}

func createTokenForm(m *Model) *formScreen {
	access := []string{"read-write", "read-only"}
	if m.p.Role == app.RoleViewer {
		access = []string{"read-only", "read-write"} // a viewer's token can only read anyway
	}
	f := m.newForm("Create access token",
		m.text("name", "Name", "e.g. laptop-cli"),
		m.pick("write", "Access", access...),
		m.pick("expires_at", "Expires", "30 days", "7 days", "60 days", "90 days", "never"))
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		name := f.get("name")
		write := f.get("write") == "read-write"
		in := app.TokenInput{Name: &name, Write: &write}
		if exp := f.get("expires_at"); exp == "never" {
			in.ExpiresAt = json.RawMessage(`"never"`)
		} else {
			d, _ := strconv.Atoi(strings.Fields(exp)[0])
			in.ExpiresInDays = &d
		}
		t, err := m.svc.CreateToken(m.ctx, m.p, in)
		if err != nil {
			f.fail(err)
			return nil
		}
		m.created(t.ID, "created access token "+t.Name)
		m.showOnce("Access token", "The value of access token "+t.Name+" (use it as a Bearer token):", []string{t.Token})
		return nil
	}
	return f
}

// ---------------------------------------------------------------- tasks

func tasksView() *viewSpec {
	return &viewSpec{name: "Tasks", cmd: "tasks", aliases: []string{"task"},
		columns: []column{{title: "CREATED", min: 14}, {title: "KIND", min: 8, max: 24, flex: true},
			{title: "STATE", min: 9, state: true}, {title: "HOST", min: 8}, {title: "USER", min: 5, max: 16, flex: true},
			{title: "PROGRESS", min: 20, max: 50, flex: true}},
		load: func(m *Model) ([]row, error) {
			ts, err := m.svc.ListTasks(m.ctx, m.p, app.TaskFilter{Limit: 200})
			if err != nil {
				return nil, err
			}
			hs, err := m.svc.ListHosts(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			us, err := m.svc.ListUsers(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			hosts, users := map[string]string{}, map[string]string{}
			for _, h := range hs {
				hosts[h.ID] = h.ShortID
			}
			for _, u := range us {
				users[u.ID] = u.Username
			}
			sort.SliceStable(ts, func(i, j int) bool { return ts[i].CreatedAt.After(ts[j].CreatedAt) })
			rows := make([]row, 0, len(ts))
			for _, t := range ts {
				h := hosts[t.HostID]
				if h == "" {
					h = short(t.HostID)
				}
				rows = append(rows, row{key: t.ID, item: t, cells: []string{t.CreatedAt.UTC().Format("01-02 15:04:05"),
					t.Kind, t.State, dash(h), dash(users[t.UserID]), taskProgress(t)}})
			}
			return rows, nil
		},
		detail: func(m *Model, r row) []string {
			t := r.item.(app.Task)
			out := []string{m.kv("Host", dash(r.cells[3])), m.kv("User", dash(r.cells[4])),
				m.kv("Created", fmtTime(t.CreatedAt)), m.kv("Started", fmtTimeP(t.StartedAt, "-")),
				m.kv("Finished", fmtTimeP(t.FinishedAt, "-"))}
			return append(out, taskLines(m, t)...)
		},
		live: func([]row) bool { return true },
		liveItem: func(_ *Model, r row) bool {
			t := r.item.(app.Task)
			return t.State == app.TaskQueued || t.State == app.TaskRunning
		},
	}
}

func taskProgress(t app.Task) string {
	if t.Error != nil {
		return t.Error.Message
	}
	if len(t.Steps) == 0 {
		return "-"
	}
	done := 0
	for _, s := range t.Steps {
		if s.State == "done" {
			done++
		}
	}
	last := t.Steps[len(t.Steps)-1]
	return fmt.Sprintf("%d/%d %s", done, len(t.Steps), last.Name)
}

// ---------------------------------------------------------------- events

func eventColumns() []column {
	return []column{{title: "TIME", min: 10, max: 19}, {title: "TYPE", min: 8, max: 24, flex: true},
		{title: "RESULT", min: 7, state: true}, {title: "ACTOR", min: 5, max: 16, flex: true},
		{title: "MESSAGE", min: 20, max: 60, flex: true}}
}

func eventRows(evs []app.Event) []row {
	rows := make([]row, 0, len(evs))
	for _, e := range evs {
		actor := e.ActorName
		if actor == "" {
			actor = short(e.ActorID)
		}
		rows = append(rows, row{key: e.ID, item: e, cells: []string{e.Time.UTC().Format(secondsLayout), e.Action,
			e.Result, dash(actor), e.Message}})
	}
	return rows
}

func eventsView() *viewSpec {
	return &viewSpec{name: "Events", cmd: "events", aliases: []string{"event", "audit", "ev"},
		columns: eventColumns(),
		load: func(m *Model) ([]row, error) {
			page, err := m.svc.ListEvents(m.ctx, m.p, app.EventQuery{Limit: 500})
			if err != nil {
				return nil, err
			}
			return eventRows(page.Events), nil
		},
		detail: func(m *Model, r row) []string {
			e := r.item.(app.Event)
			return []string{m.kv("ID", e.ID), m.kv("Time", e.Time.UTC().Format(time.RFC3339Nano)), m.kv("Type", e.Action),
				m.kv("Result", e.Result), m.kv("Actor", dash(e.ActorName)+" "+e.ActorID), m.kv("Auth method", dash(e.AuthMethod)),
				m.kv("Token", dash(e.TokenName)+" "+e.TokenID), m.kv("Source IP", dash(e.SourceIP)),
				m.kv("Target", dash(e.TargetType)+" "+e.TargetID), m.kv("User", dash(e.UserID)), m.kv("Host", dash(e.HostID)),
				m.kv("Message", dash(e.Message))}
		},
	}
}

// ---------------------------------------------------------------- SSH keys (own)

func keysView() *viewSpec {
	v := &viewSpec{name: "SSH Keys", cmd: "keys", aliases: []string{"key", "sshkeys", "ssh-keys", "k"},
		empty: "no SSH keys; press a to add your public key or g to generate a key pair",
		columns: []column{{title: "NAME", min: 6, max: 24, flex: true}, {title: "TYPE", min: 7, max: 20, flex: true},
			{title: "FINGERPRINT", min: 14, max: 50, flex: true}, {title: "SOURCE", min: 6}, {title: "ADDED", min: 10}},
		load: func(m *Model) ([]row, error) {
			ks, err := m.svc.ListSSHKeys(m.ctx, m.p, m.p.UserID)
			if err != nil {
				return nil, err
			}
			sort.SliceStable(ks, func(i, j int) bool {
				if !ks[i].CreatedAt.Equal(ks[j].CreatedAt) {
					return ks[i].CreatedAt.Before(ks[j].CreatedAt)
				}
				return ks[i].Fingerprint < ks[j].Fingerprint
			})
			rows := make([]row, 0, len(ks))
			for _, k := range ks {
				rows = append(rows, row{key: k.ID, item: k, cells: []string{dash(k.Name), k.Type, k.Fingerprint, k.Source, fmtTime(k.CreatedAt)}})
			}
			return rows, nil
		},
		detail: func(m *Model, r row) []string {
			k := r.item.(app.SSHKey)
			return []string{m.kv("ID", k.ID), m.kv("Name", dash(k.Name)), m.kv("Type", k.Type), m.kv("Fingerprint", k.Fingerprint),
				m.kv("Source", k.Source), m.kv("Added", fmtTime(k.CreatedAt)), "", m.section("Public key"), k.PublicKey}
		},
	}
	v.actions = []*action{
		{key: "a", label: "add", run: func(m *Model, _ row) tea.Cmd {
			f := m.newForm("Add SSH key", m.text("public_key", "Public key", "paste one line of ~/.ssh/id_ed25519.pub"),
				m.text("name", "Name", "optional; defaults to the key's comment"))
			f.submit = func(m *Model, f *formScreen) tea.Cmd {
				k, err := m.svc.AddSSHKey(m.ctx, m.p, m.p.UserID, app.AddKeyInput{PublicKey: f.get("public_key"), Name: f.get("name")})
				if err != nil {
					f.fail(err)
					return nil
				}
				m.created(k.ID, "added "+k.Type+" key "+k.Fingerprint)
				return nil
			}
			m.push(f)
			return nil
		}},
		{key: "g", label: "generate", confirm: func(m *Model, _ row) *confirmation {
			return yesNo("Generate an ed25519 key pair? The private key is shown once.", func(m *Model) tea.Cmd {
				g, err := m.svc.GenerateSSHKey(m.ctx, m.p, m.p.UserID)
				if err != nil {
					m.fail(err)
					return nil
				}
				m.created(g.Key.ID, "generated key "+g.Key.Fingerprint)
				lines := strings.Split(strings.TrimRight(g.PrivateKey, "\n"), "\n")
				lines = append(lines, "", "Save it as ~/.ssh/ccp_ed25519 (chmod 600) and use ssh -i ~/.ssh/ccp_ed25519.")
				m.showOnce("Private key", "The private key of "+g.Key.Fingerprint+":", lines)
				return nil
			})
		}},
		{key: "d", label: "delete", row: true, confirm: func(m *Model, r row) *confirmation {
			k := r.item.(app.SSHKey)
			return yesNo("Delete SSH key "+k.Fingerprint+"?", func(m *Model) tea.Cmd {
				if err := m.svc.DeleteSSHKey(m.ctx, m.p, m.p.UserID, k.ID); err != nil {
					m.fail(err)
					return nil
				}
				m.done("deleted SSH key " + k.Fingerprint)
				return nil
			})
		}},
	}
	return v
}

// ---------------------------------------------------------------- password

func passwordView() *viewSpec {
	return &viewSpec{name: "Password", cmd: "password", tab: "passwd", aliases: []string{"passwd", "account", "me"},
		page: func(m *Model) screen { return &accountScreen{} }}
}

// accountScreen shows who is signed in and opens the password form.
type accountScreen struct {
	me  app.UserView
	err error
}

func (a *accountScreen) title(*Model) string { return "Password" }
func (a *accountScreen) captures() bool      { return false }
func (a *accountScreen) live(*Model) bool    { return false }
func (a *accountScreen) reload(m *Model)     { a.me, a.err = m.svc.Me(m.ctx, m.p) }
func (a *accountScreen) hints(*Model) []hint {
	return []hint{{"enter", "change password"}}
}

func (a *accountScreen) body(m *Model, w, h int) []string {
	if a.err != nil {
		return []string{"", m.st.errText.Render(" " + errorText(a.err))}
	}
	return []string{"",
		" " + m.kv("Username", a.me.Username), " " + m.kv("Role", a.me.Role), " " + m.kv("Status", a.me.Status),
		" " + m.kv("Expires", fmtTimeP(a.me.ExpiresAt, "never")), " " + m.kv("Signed in by", m.p.Method),
		" " + m.kv("From", dash(m.p.SourceIP)), "",
		" " + m.st.dim.Render("Press enter to change your password."),
	}
}

func (a *accountScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	if k.String() != "enter" && k.String() != "c" {
		return nil
	}
	f := m.newForm("Change password", m.secret("old_password", "Current"), m.secret("new_password", "New"),
		m.secret("confirm", "New again"))
	f.intro = []string{"Your other sessions end when the password changes."}
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		if f.raw("new_password") != f.raw("confirm") {
			f.fail(formError("confirm", "the new passwords do not match"))
			return nil
		}
		if _, err := m.svc.ChangePassword(m.ctx, m.p, app.ChangePasswordInput{OldPassword: f.raw("old_password"),
			NewPassword: f.raw("new_password")}); err != nil {
			f.fail(err)
			return nil
		}
		m.popTo(f)
		m.info("password changed")
		return nil
	}
	m.push(f)
	return nil
}
