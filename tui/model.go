package tui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Options tune a Model.
type Options struct {
	// Context bounds every service call (the SSH session's context); nil is Background.
	Context context.Context
	// Renderer styles the output; the door builds one per session. Nil uses lipgloss's
	// default renderer.
	Renderer *lipgloss.Renderer
	// Width and Height are the initial terminal size until a tea.WindowSizeMsg arrives;
	// zero means 80×24.
	Width, Height int
	// PollInterval is how often a view showing running work refreshes; zero means 1s.
	PollInterval time.Duration
	// OnQuit, if set, is called once when the model asks the program to quit, before the
	// program stops (the SSH door stops feeding it input there).
	OnQuit func()
	// Recheck, if set, is asked before every key and poll whether the principal may still
	// use the service, and with which role (app.Service.LoginAllowed for SSH sessions). A
	// refusal ends the program; a new role takes effect at once.
	Recheck func(ctx context.Context, p app.Principal) (app.Principal, error)
	// Connect, if set, makes enter on one of the user's hosts open its shell in the same
	// terminal: the command it returns runs with the terminal handed over (tea.Exec) and
	// the TUI comes back when it returns, saying how the connection ended (the message
	// of an error it returns). It is called while the enter key is handled, so the caller
	// can stop the program's input there. Nil: enter ends the program with
	// Result.ConnectHostID set.
	Connect func(hostID string) tea.ExecCommand
}

// Result is what the session asked for when the program ended.
type Result struct {
	// ConnectHostID is the host whose shell the door should open after the TUI exits
	// (a user pressed enter on one of their hosts); empty otherwise.
	ConnectHostID string
	// Ended says why the program ended by itself (the account may no longer sign in);
	// empty when the user quit.
	Ended string
}

// Model is the TUI. It is used through a pointer: Update returns the same *Model, so the
// door can read Result after the program exits.
type Model struct {
	svc  *app.Service
	p    app.Principal
	opts Options
	ctx  context.Context
	st   styles

	width, height int

	views []*viewSpec
	cur   int      // index of the current view in views
	stack []screen // stack[0] is the current view's page; esc pops

	prompt *prompt
	flash  flash
	result Result

	tickPending bool
	tick        func(d time.Duration) tea.Cmd // replaced by tests
	quitting    bool
}

// New builds the TUI of principal p.
func New(svc *app.Service, p app.Principal, opts Options) tea.Model {
	return NewModel(svc, p, opts)
}

// NewModel is New returning the concrete type.
func NewModel(svc *app.Service, p app.Principal, opts Options) *Model {
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Renderer == nil {
		opts.Renderer = lipgloss.DefaultRenderer()
	}
	if opts.Width <= 0 {
		opts.Width = 80
	}
	if opts.Height <= 0 {
		opts.Height = 24
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	m := &Model{svc: svc, p: p, opts: opts, ctx: opts.Context, st: newStyles(opts.Renderer),
		width: opts.Width, height: opts.Height}
	m.tick = func(d time.Duration) tea.Cmd {
		return tea.Tick(d, func(time.Time) tea.Msg { return tickMsg{} })
	}
	m.views = viewsFor(p)
	m.switchView(0)
	return m
}

// recheck asks the service whether the principal may still sign in. When it may not, the
// program quits; when its role changed, the views are rebuilt for the new role. Either way
// the message that prompted the check is dropped (stop).
func (m *Model) recheck() (cmd tea.Cmd, stop bool) {
	if m.opts.Recheck == nil || m.quitting {
		return nil, false
	}
	p, err := m.opts.Recheck(m.ctx, m.p)
	if err != nil {
		m.result.Ended = "session ended: this account can no longer sign in"
		return m.quit(), true
	}
	if p.Role != m.p.Role {
		m.p = p
		m.views = viewsFor(p)
		m.prompt = nil
		m.switchView(0)
		m.info("your role is now " + p.Role.String())
		return nil, true
	}
	m.p = p
	return nil, false
}

// quit ends the program.
func (m *Model) quit() tea.Cmd {
	if !m.quitting {
		m.quitting = true
		if m.opts.OnQuit != nil {
			m.opts.OnQuit()
		}
	}
	return tea.Quit
}

// connect opens the shell of host r through Options.Connect, handing the terminal over
// until it returns.
func (m *Model) connect(r row) tea.Cmd {
	name := r.key
	if h, ok := r.item.(app.HostView); ok && h.ShortID != "" {
		name = h.ShortID
	}
	c := m.opts.Connect(r.key)
	if c == nil {
		return nil
	}
	return tea.Exec(c, func(err error) tea.Msg { return connectedMsg{host: name, err: err} })
}

// connectedMsg says that the shell opened by connect has ended, or why it did not open.
type connectedMsg struct {
	host string
	err  error
}

// ShellExit is what a Connect command returns when the shell it opened has ended: its exit
// status (-1 when unknown: the connection went away or the session was ended). The TUI shows
// it when it is back.
type ShellExit struct{ Code int }

func (e *ShellExit) Error() string { return fmt.Sprintf("shell exited with status %d", e.Code) }

func (m *Model) connected(msg connectedMsg) {
	var exit *ShellExit
	if errors.As(msg.err, &exit) {
		if exit.Code < 0 {
			m.info("connection to " + msg.host + " closed (exit status unknown)")
		} else {
			m.info(fmt.Sprintf("connection to %s closed (exit status %d)", msg.host, exit.Code))
		}
		m.reloadAll()
		return
	}
	if msg.err != nil {
		m.flash = flash{text: "cannot connect to " + msg.host + ": " + strings.TrimPrefix(errorText(msg.err), "error: "), err: true}
	} else {
		m.info("connection to " + msg.host + " closed")
	}
	m.reloadAll() // the host may have been started meanwhile
}

// Result reports what the session asked for; read it after the program has exited.
func (m *Model) Result() Result { return m.result }

type tickMsg struct{}

type flash struct {
	text string
	err  bool
}

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return m.ensureTick() }

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	switch msg.(type) {
	case tea.KeyMsg, tickMsg:
		if _, ok := msg.(tickMsg); ok {
			m.tickPending = false
		}
		if c, stop := m.recheck(); stop {
			return m, tea.Batch(c, m.ensureTick())
		}
	}
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		if msg.Width > 0 && msg.Height > 0 {
			m.width, m.height = msg.Width, msg.Height
		}
	case tickMsg:
		if m.live() {
			m.reloadAll()
		}
	case tea.KeyMsg:
		if msg.Alt && msg.Type == tea.KeyRunes && !msg.Paste && m.prompt == nil && !m.top().captures() {
			// esc then a key, sent faster than a person types (a script, tmux send-keys),
			// arrives as alt+key; nothing here is bound to alt.
			esc := m.key(tea.KeyMsg{Type: tea.KeyEsc})
			msg.Alt = false
			_, rest := m.Update(msg)
			return m, tea.Batch(esc, rest)
		}
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste {
			// Fast typing arrives as one message of several runes; each is a key here
			// (":users" is ':' then a command), as typed slowly.
			var cmds []tea.Cmd
			for _, r := range msg.Runes {
				cmds = append(cmds, m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt}))
			}
			cmd = tea.Batch(cmds...)
		} else {
			cmd = m.key(msg)
		}
	case asyncMsg:
		cmd = msg.apply(m)
	case connectedMsg:
		m.connected(msg)
	}
	if m.result.ConnectHostID != "" {
		return m, m.quit()
	}
	return m, tea.Batch(cmd, m.ensureTick())
}

// asyncMsg carries the outcome of a slow service call run as a tea.Cmd.
type asyncMsg struct{ apply func(m *Model) tea.Cmd }

func (m *Model) ensureTick() tea.Cmd {
	if m.tickPending || !m.live() {
		return nil
	}
	m.tickPending = true
	return m.tick(m.opts.PollInterval)
}

// live reports whether the screen shows work in progress that should refresh itself.
func (m *Model) live() bool {
	return m.top().live(m)
}

func (m *Model) top() screen { return m.stack[len(m.stack)-1] }

func (m *Model) push(s screen) { m.stack = append(m.stack, s) }

func (m *Model) pop() {
	if len(m.stack) > 1 {
		m.stack = m.stack[:len(m.stack)-1]
		m.top().reload(m)
	}
}

// popTo drops every screen above s (used after a form or a detail completes).
func (m *Model) popTo(s screen) {
	for i := len(m.stack) - 1; i > 0; i-- {
		if m.stack[i] == s {
			m.stack = m.stack[:i]
			break
		}
	}
	m.reloadAll()
}

func (m *Model) reloadAll() {
	for _, s := range m.stack {
		s.reload(m)
	}
}

func (m *Model) switchView(i int) {
	if i < 0 || i >= len(m.views) {
		return
	}
	m.cur = i
	m.stack = []screen{m.views[i].open(m)}
	m.stack[0].reload(m)
}

func (m *Model) viewByName(name string) int {
	name = strings.ToLower(strings.TrimSpace(name))
	for i, v := range m.views {
		if v.cmd == name {
			return i
		}
		for _, a := range v.aliases {
			if a == name {
				return i
			}
		}
	}
	return -1
}

func (m *Model) info(format string) { m.flash = flash{text: format} }

func (m *Model) fail(err error) {
	if err == nil {
		return
	}
	m.flash = flash{text: errorText(err), err: true}
}

// errorText renders a service error for the message line.
func errorText(err error) string {
	if errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	ae := app.AsError(err)
	switch ae.Kind {
	case app.KindForbidden:
		return "read-only: " + ae.Message
	case app.KindInternal:
		if ae.Code != app.CodeInternal && ae.Message != "" {
			return "error: " + ae.Message
		}
		return "error: internal error"
	}
	return "error: " + ae.Message
}

// readOnly refuses a change the principal's credential cannot make (Principal.CanWrite is
// app's rule; the service would answer 403).
func (m *Model) readOnly() {
	m.flash = flash{text: "read-only: " + m.p.Username + " (" + m.p.Role.String() + ") cannot make changes", err: true}
}

// key handles a key press.
func (m *Model) key(k tea.KeyMsg) tea.Cmd {
	if k.Type == tea.KeyCtrlC {
		return m.quit()
	}
	if m.prompt != nil {
		return m.prompt.handle(m, k)
	}
	m.flash = flash{}
	top := m.top()
	if top.captures() {
		if k.Type == tea.KeyEsc {
			if len(m.stack) > 1 {
				m.pop()
			} else {
				return top.handle(m, k)
			}
			return nil
		}
		return top.handle(m, k)
	}
	switch k.String() {
	case "q":
		return m.quit()
	case "?":
		if _, ok := top.(*helpScreen); !ok {
			m.push(newHelp(m))
		}
		return nil
	case ":":
		m.prompt = newPrompt(m, promptCommand, ":")
		return nil
	case "/":
		if l, ok := top.(*listScreen); ok {
			m.prompt = newPrompt(m, promptFilter, "/")
			m.prompt.input.SetValue(l.filter)
			m.prompt.input.CursorEnd()
			return nil
		}
	case "esc":
		if len(m.stack) > 1 {
			m.pop()
			return nil
		}
		if l, ok := top.(*listScreen); ok && l.filter != "" {
			l.setFilter("")
		}
		return nil
	case "tab":
		m.switchView((m.cur + 1) % len(m.views))
		return nil
	case "shift+tab":
		m.switchView((m.cur + len(m.views) - 1) % len(m.views))
		return nil
	case "ctrl+r":
		m.reloadAll()
		m.info("refreshed")
		return nil
	}
	return top.handle(m, k)
}

// runAction performs an action on a row, through a confirmation when it has one.
func (m *Model) runAction(a *action, r row) tea.Cmd {
	if a.write && !m.p.CanWrite() {
		m.readOnly()
		return nil
	}
	if a.confirm != nil {
		c := a.confirm(m, r)
		if c != nil {
			m.prompt = &prompt{kind: promptConfirm, question: c.question, choices: c.choices}
			return nil
		}
	}
	return a.run(m, r)
}

// View implements tea.Model.
func (m *Model) View() string {
	w, h := m.width, m.height
	if h < 6 {
		h = 6
	}
	msg := m.messageLines(w)
	bodyH := h - 3 - len(msg)
	lines := make([]string, 0, h)
	lines = append(lines, m.headerLine(w), m.tabLine(w))
	body := m.top().body(m, w, bodyH)
	for i := 0; i < bodyH; i++ {
		if i < len(body) {
			lines = append(lines, clip(body[i], w))
		} else {
			lines = append(lines, "")
		}
	}
	lines = append(lines, msg...)
	lines = append(lines, m.hintLine(w))
	return strings.Join(lines, "\n")
}

func (m *Model) headerLine(w int) string {
	crumbs := []string{"cloud-cli-proxy"}
	for _, s := range m.stack {
		if t := s.title(m); t != "" {
			crumbs = append(crumbs, t)
		}
	}
	left := " " + sanitize(strings.Join(crumbs, " > "))
	who := m.p.Username + " (" + m.p.Role.String()
	if !m.p.CanWrite() {
		who += ", read-only"
	}
	right := who + ") "
	gap := w - lipgloss.Width(left) - lipgloss.Width(right)
	var line string
	if gap >= 1 {
		line = left + strings.Repeat(" ", gap) + right
	} else {
		line = fit(left, w)
	}
	return m.st.header.Render(fit(line, w))
}

func (m *Model) tabLine(w int) string {
	var b strings.Builder
	for i, v := range m.views {
		if i == m.cur {
			b.WriteString(m.st.tabActive.Render("[" + v.tabName() + "]"))
		} else {
			b.WriteString(m.st.tab.Render(" " + v.tabName() + " "))
		}
	}
	return clip(b.String(), w)
}

// messageLines is the line above the hints: a prompt, the last outcome (wrapped onto a
// second line when long: service messages are worth reading whole) or the active filter.
func (m *Model) messageLines(w int) []string {
	if m.prompt != nil {
		return []string{clip(m.prompt.view(m), w)}
	}
	if m.flash.text != "" {
		st := m.st.okText
		if m.flash.err {
			st = m.st.errText
		}
		wrapped := strings.Split(ansi.Wrap(" "+sanitize(m.flash.text), max(w-1, 10), " "), "\n")
		if len(wrapped) > 2 {
			wrapped = []string{wrapped[0], wrapped[1] + " " + strings.Join(wrapped[2:], " ")}
		}
		for i := range wrapped {
			if i > 0 {
				wrapped[i] = " " + wrapped[i]
			}
			wrapped[i] = st.Render(clip(wrapped[i], w))
		}
		return wrapped
	}
	if l, ok := m.top().(*listScreen); ok && l.filter != "" {
		return []string{m.st.dim.Render(clip(" filter: "+l.filter+"  (esc clears)", w))}
	}
	return []string{""}
}

// hint is one entry of the key-hint bar.
type hint struct{ key, label string }

func (m *Model) hintLine(w int) string {
	var hs []hint
	if m.prompt != nil {
		hs = m.prompt.hints()
	} else {
		hs = m.top().hints(m)
		if !m.top().captures() {
			if _, ok := m.top().(*listScreen); ok {
				hs = append(hs, hint{"/", "filter"})
			}
			hs = append(hs, hint{":", "view"}, hint{"?", "help"}, hint{"q", "quit"})
		}
	}
	// Keep what fits, most important first (help, then the screen's own keys, then the
	// global ones), and show the kept hints in their original order.
	prio := func(h hint) int {
		switch h.key {
		case "?":
			return 0
		case "/", ":", "q":
			return 3
		case "enter":
			return 2
		}
		return 1
	}
	order := make([]int, len(hs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return prio(hs[order[a]]) < prio(hs[order[b]]) })
	keep := make([]bool, len(hs))
	used := 0
	for _, i := range order {
		add := len([]rune("<"+hs[i].key+"> "+hs[i].label)) + 1
		if used+add > w+1 {
			continue
		}
		keep[i] = true
		used += add
	}
	var parts []string
	for i, h := range hs {
		if keep[i] {
			parts = append(parts, m.st.hintKey.Render("<"+h.key+">")+m.st.hintText.Render(" "+h.label))
		}
	}
	return strings.Join(parts, " ")
}

// prompt is the message-line input: a filter, a view command or a y/n confirmation.
type prompt struct {
	kind     promptKind
	input    textinput.Model
	question string
	choices  []choice
}

type promptKind int

const (
	promptFilter promptKind = iota
	promptCommand
	promptConfirm
)

// choice is one answer of a confirmation.
type choice struct {
	key, label string
	run        func(m *Model) tea.Cmd // nil: cancel
}

func newPrompt(m *Model, kind promptKind, p string) *prompt {
	ti := m.newInput()
	ti.Prompt = p
	ti.CharLimit = 200
	ti.Focus()
	return &prompt{kind: kind, input: ti}
}

func (p *prompt) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	if p.kind == promptConfirm {
		for _, c := range p.choices {
			if k.String() == c.key {
				m.prompt = nil
				if c.run == nil {
					m.info("cancelled")
					return nil
				}
				return c.run(m)
			}
		}
		if k.Type == tea.KeyEsc {
			m.prompt = nil
			m.info("cancelled")
		}
		return nil
	}
	switch k.Type {
	case tea.KeyEsc:
		m.prompt = nil
		if p.kind == promptFilter {
			if l, ok := m.top().(*listScreen); ok {
				l.setFilter("")
			}
		}
		return nil
	case tea.KeyEnter:
		m.prompt = nil
		v := strings.TrimSpace(p.input.Value())
		if p.kind == promptCommand {
			if v == "q" || v == "quit" {
				return m.quit()
			}
			if v == "" {
				return nil
			}
			if i := m.viewByName(v); i >= 0 {
				m.switchView(i)
			} else {
				m.flash = flash{text: "unknown view " + v + " (try " + m.viewNames() + ")", err: true}
			}
		}
		return nil
	}
	var cmd tea.Cmd
	p.input, cmd = p.input.Update(k)
	if p.kind == promptFilter {
		if l, ok := m.top().(*listScreen); ok {
			l.setFilter(p.input.Value())
		}
	}
	return cmd
}

func (m *Model) viewNames() string {
	var names []string
	for _, v := range m.views {
		names = append(names, v.cmd)
	}
	return strings.Join(names, ", ")
}

func (p *prompt) view(m *Model) string {
	if p.kind == promptConfirm {
		var opts []string
		for _, c := range p.choices {
			opts = append(opts, c.key+"="+c.label)
		}
		return m.st.warnText.Render(" " + sanitize(p.question) + " [" + strings.Join(opts, " ") + "]")
	}
	return " " + p.input.View()
}

func (p *prompt) hints() []hint {
	switch p.kind {
	case promptConfirm:
		var hs []hint
		for _, c := range p.choices {
			hs = append(hs, hint{c.key, c.label})
		}
		return append(hs, hint{"esc", "cancel"})
	case promptCommand:
		return []hint{{"enter", "go to view"}, {"esc", "cancel"}}
	}
	return []hint{{"enter", "keep filter"}, {"esc", "clear filter"}}
}

// newInput is a text input styled with the session's renderer, with a steady cursor and no
// clipboard access (the clipboard would be the server's).
func (m *Model) newInput() textinput.Model {
	ti := textinput.New()
	ti.Prompt = ""
	r := m.st.r
	ti.PromptStyle = r.NewStyle()
	ti.TextStyle = r.NewStyle()
	ti.PlaceholderStyle = m.st.dim
	ti.CompletionStyle = m.st.dim
	ti.Cursor.Style = r.NewStyle()
	ti.Cursor.TextStyle = r.NewStyle()
	ti.Cursor.SetMode(cursor.CursorStatic)
	ti.KeyMap.Paste.SetEnabled(false)
	return ti
}
