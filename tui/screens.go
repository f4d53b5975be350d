package tui

import (
	"strconv"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
)

// screen is one level of the navigation stack: a list, a detail, a form, a text page.
type screen interface {
	title(m *Model) string
	body(m *Model, w, h int) []string
	hints(m *Model) []hint
	handle(m *Model, k tea.KeyMsg) tea.Cmd
	// captures reports whether the screen takes printable keys (a form).
	captures() bool
	reload(m *Model)
	live(m *Model) bool
}

// ---------------------------------------------------------------- list

type listScreen struct {
	spec   *viewSpec
	all    []row
	rows   []row
	cursor int
	offset int
	filter string
	err    error
	pageH  int
}

func (l *listScreen) title(*Model) string {
	n := len(l.rows)
	if l.filter != "" {
		return l.spec.name + " (" + strconv.Itoa(n) + "/" + strconv.Itoa(len(l.all)) + ")"
	}
	return l.spec.name + " (" + strconv.Itoa(n) + ")"
}

func (l *listScreen) captures() bool { return false }

func (l *listScreen) reload(m *Model) {
	rows, err := l.spec.load(m)
	l.err = err
	if err != nil {
		return
	}
	key := ""
	if l.cursor < len(l.rows) {
		key = l.rows[l.cursor].key
	}
	l.all = rows
	l.applyFilter(key)
}

func (l *listScreen) setFilter(f string) {
	key := ""
	if l.cursor < len(l.rows) {
		key = l.rows[l.cursor].key
	}
	l.filter = f
	l.applyFilter(key)
}

func (l *listScreen) applyFilter(keepKey string) {
	f := strings.ToLower(strings.TrimSpace(l.filter))
	l.rows = l.rows[:0:0]
	for _, r := range l.all {
		if f == "" || strings.Contains(strings.ToLower(strings.Join(r.cells, " ")), f) {
			l.rows = append(l.rows, r)
		}
	}
	l.cursor = min(l.cursor, max(len(l.rows)-1, 0))
	for i, r := range l.rows {
		if r.key == keepKey {
			l.cursor = i
			break
		}
	}
}

func (l *listScreen) live(m *Model) bool {
	return l.spec.live != nil && l.err == nil && l.spec.live(l.all)
}

func (l *listScreen) selected() (row, bool) {
	if l.cursor < 0 || l.cursor >= len(l.rows) {
		return row{}, false
	}
	return l.rows[l.cursor], true
}

func (l *listScreen) body(m *Model, w, h int) []string {
	if l.err != nil {
		return []string{"", m.st.errText.Render(" " + errorText(l.err))}
	}
	l.pageH = max(h-1, 1)
	if l.cursor < l.offset {
		l.offset = l.cursor
	}
	if l.cursor >= l.offset+l.pageH {
		l.offset = l.cursor - l.pageH + 1
	}
	if l.offset > max(len(l.rows)-l.pageH, 0) {
		l.offset = max(len(l.rows)-l.pageH, 0)
	}
	widths := layout(l.spec.columns, l.rows, w)
	out := renderTable(m.st, l.spec.columns, l.rows, widths, l.cursor, l.offset, h, w)
	if len(l.rows) == 0 {
		msg := "  nothing here yet"
		if l.filter != "" {
			msg = "  nothing matches the filter"
		} else if l.spec.empty != "" {
			msg = "  " + l.spec.empty
		}
		out = append(out, m.st.dim.Render(msg))
	}
	return out
}

func (l *listScreen) hints(m *Model) []hint {
	var hs []hint
	r, ok := l.selected()
	if ok {
		if l.spec.enter != nil {
			hs = append(hs, hint{"enter", l.spec.enter.label})
		} else if l.spec.detail != nil {
			hs = append(hs, hint{"enter", "details"})
		}
	}
	return append(hs, actionHints(m, l.spec, r, ok, false)...)
}

func actionHints(m *Model, spec *viewSpec, r row, haveRow, rowOnly bool) []hint {
	var hs []hint
	for _, a := range spec.actions {
		if a.write && !m.p.CanWrite() {
			continue
		}
		if rowOnly && !a.row {
			continue
		}
		if a.row && (!haveRow || (a.when != nil && !a.when(r))) {
			continue
		}
		hs = append(hs, hint{a.key, a.label})
	}
	return hs
}

func (l *listScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	switch k.String() {
	case "up", "k":
		if l.cursor > 0 {
			l.cursor--
		}
		return nil
	case "down", "j":
		if l.cursor < len(l.rows)-1 {
			l.cursor++
		}
		return nil
	case "pgup", "ctrl+b":
		l.cursor = max(l.cursor-l.pageH, 0)
		return nil
	case "pgdown", "ctrl+f", " ":
		l.cursor = max(min(l.cursor+l.pageH, len(l.rows)-1), 0)
		return nil
	case "home":
		l.cursor = 0
		return nil
	case "end":
		l.cursor = max(len(l.rows)-1, 0)
		return nil
	case "enter":
		r, ok := l.selected()
		if !ok {
			return nil
		}
		if l.spec.enter != nil {
			return m.runAction(l.spec.enter, r)
		}
		if l.spec.detail != nil {
			d := &detailScreen{spec: l.spec, key: r.key, item: r}
			m.push(d)
			d.reload(m)
		}
		return nil
	}
	r, ok := l.selected()
	for _, a := range l.spec.actions {
		if a.key != k.String() {
			continue
		}
		if a.row && !ok {
			return nil
		}
		if a.row && a.when != nil && !a.when(r) {
			return nil
		}
		return m.runAction(a, r)
	}
	return nil
}

// ---------------------------------------------------------------- detail

type detailScreen struct {
	spec   *viewSpec
	key    string
	item   row
	gone   bool
	lines  []string
	offset int
	pageH  int
}

func (d *detailScreen) title(*Model) string {
	if len(d.item.cells) > 0 {
		return d.item.cells[0]
	}
	return d.key
}

func (d *detailScreen) captures() bool { return false }

func (d *detailScreen) reload(m *Model) {
	rows, err := d.spec.load(m)
	if err != nil {
		d.lines = []string{m.st.errText.Render(errorText(err))}
		return
	}
	d.gone = true
	for _, r := range rows {
		if r.key == d.key {
			d.item, d.gone = r, false
			break
		}
	}
	if d.gone {
		d.lines = []string{m.st.dim.Render("this item no longer exists")}
		return
	}
	d.lines = d.spec.detail(m, d.item)
}

func (d *detailScreen) live(m *Model) bool {
	return !d.gone && d.spec.liveItem != nil && d.spec.liveItem(m, d.item)
}

func (d *detailScreen) body(m *Model, w, h int) []string {
	var wrapped []string
	for _, l := range d.lines {
		wrapped = append(wrapped, strings.Split(ansi.Hardwrap(l, max(w-1, 10), true), "\n")...)
	}
	d.pageH = h
	if d.offset > max(len(wrapped)-h, 0) {
		d.offset = max(len(wrapped)-h, 0)
	}
	out := make([]string, 0, h)
	for i := d.offset; i < len(wrapped) && len(out) < h; i++ {
		out = append(out, " "+wrapped[i])
	}
	return out
}

func (d *detailScreen) hints(m *Model) []hint {
	var hs []hint
	if d.gone {
		return []hint{{"esc", "back"}}
	}
	if d.spec.enter != nil {
		hs = append(hs, hint{"enter", d.spec.enter.label})
	}
	hs = append(hs, actionHints(m, d.spec, d.item, true, true)...)
	return append(hs, hint{"esc", "back"})
}

func (d *detailScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	switch k.String() {
	case "up", "k":
		d.offset = max(d.offset-1, 0)
		return nil
	case "down", "j":
		d.offset++
		return nil
	case "pgup", "ctrl+b":
		d.offset = max(d.offset-d.pageH, 0)
		return nil
	case "pgdown", "ctrl+f", " ":
		d.offset += d.pageH
		return nil
	case "enter":
		if d.spec.enter != nil && !d.gone {
			return m.runAction(d.spec.enter, d.item)
		}
		return nil
	}
	if d.gone {
		return nil
	}
	for _, a := range d.spec.actions {
		if a.key == k.String() && a.row && (a.when == nil || a.when(d.item)) {
			return m.runAction(a, d.item)
		}
	}
	return nil
}

// ---------------------------------------------------------------- text page

// textScreen shows fixed text: help, a secret shown once, a test result.
type textScreen struct {
	name  string
	lines []string
	// verbatim marks lines shown as they are: from the first column, unstyled, wrapped
	// only where the terminal is narrower than they are. Text meant to be copied into a
	// file (a private key) then pastes as the file it was.
	verbatim map[int]bool
	offset   int
	pageH    int
	done     string // label of enter/esc
}

func (t *textScreen) title(*Model) string { return t.name }
func (t *textScreen) captures() bool      { return false }
func (t *textScreen) reload(*Model)       {}
func (t *textScreen) live(*Model) bool    { return false }

func (t *textScreen) body(m *Model, w, h int) []string {
	var wrapped []string
	for i, l := range t.lines {
		if t.verbatim[i] {
			wrapped = append(wrapped, strings.Split(ansi.Hardwrap(l, max(w, 10), false), "\n")...)
			continue
		}
		for _, part := range strings.Split(ansi.Hardwrap(l, max(w-1, 10), true), "\n") {
			wrapped = append(wrapped, " "+part)
		}
	}
	t.pageH = h
	if t.offset > max(len(wrapped)-h, 0) {
		t.offset = max(len(wrapped)-h, 0)
	}
	out := make([]string, 0, h)
	for i := t.offset; i < len(wrapped) && len(out) < h; i++ {
		out = append(out, wrapped[i])
	}
	return out
}

func (t *textScreen) hints(*Model) []hint {
	return []hint{{"enter", t.done}, {"↑/↓", "scroll"}}
}

func (t *textScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	switch k.String() {
	case "enter":
		m.pop()
	case "up", "k":
		t.offset = max(t.offset-1, 0)
	case "down", "j":
		t.offset++
	case "pgup":
		t.offset = max(t.offset-t.pageH, 0)
	case "pgdown", " ":
		t.offset += t.pageH
	}
	return nil
}

type helpScreen struct{ textScreen }

func newHelp(m *Model) *helpScreen {
	var l []string
	add := func(k, d string) { l = append(l, "  "+fit(k, 14)+d) }
	l = append(l, m.st.title.Render("Keys"))
	add("↑/↓ j/k", "move")
	add("pgup/pgdn", "page")
	add("home/end", "first / last")
	add("enter", "open details (users: connect to a host)")
	add("esc", "back; clear the filter")
	add("/", "filter the list")
	add(":name", "jump to a view, e.g. :hosts")
	add("tab/shift+tab", "next / previous view")
	add("ctrl+r", "refresh")
	add("?", "this help")
	add("q, ctrl+c", "quit")
	l = append(l, "", m.st.dim.Render("A status with * has a task queued or running; the view refreshes itself."))
	l = append(l, "", m.st.title.Render("Views"))
	for _, v := range m.views {
		d := v.name
		if len(v.aliases) > 0 {
			d += " (also :" + strings.Join(v.aliases, ", :") + ")"
		}
		add(":"+v.cmd, d)
	}
	spec := m.views[m.cur]
	if len(spec.actions) > 0 {
		l = append(l, "", m.st.title.Render(spec.name+" actions"))
		for _, a := range spec.actions {
			d := a.label
			if a.write && !m.p.CanWrite() {
				d += " (read-only for you)"
			}
			add(a.key, d)
		}
	}
	return &helpScreen{textScreen{name: "Help", lines: l, done: "close"}}
}

func (h *helpScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	if k.String() == "?" {
		m.pop()
		return nil
	}
	return h.textScreen.handle(m, k)
}
