package tui

import (
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
