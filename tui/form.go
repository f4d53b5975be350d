package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// field is one input of a form: free text or a choice among fixed options.
type field struct {
	key     string // the service's field name, matched against app.Error.Field
	label   string
	input   textinput.Model
	choices []string
	choice  int
	help    string
	visible func(f *formScreen) bool
}

func (f *field) value() string {
	if len(f.choices) > 0 {
		return f.choices[f.choice]
	}
	return f.input.Value()
}

// formScreen is a list of fields with a submit function. The service validates: its
// *app.Error (message and field) is shown under the form and the field gets the focus.
type formScreen struct {
	name     string
	intro    []string
	fields   []*field
	focus    int
	errField string
	errMsg   string
	base     bool // the view's own page (password): esc does not leave it
	submit   func(m *Model, f *formScreen) tea.Cmd
}

func (f *formScreen) title(*Model) string { return f.name }
func (f *formScreen) captures() bool      { return true }
func (f *formScreen) reload(*Model)       {}
func (f *formScreen) live(*Model) bool    { return false }

func (m *Model) newForm(name string, fields ...*field) *formScreen {
	f := &formScreen{name: name, fields: fields}
	f.focusField(0)
	return f
}

// text makes a free-text field.
func (m *Model) text(key, label, placeholder string) *field {
	ti := m.newInput()
	ti.Placeholder = placeholder
	ti.CharLimit = 16384
	return &field{key: key, label: label, input: ti}
}

// secret makes a masked text field.
func (m *Model) secret(key, label string) *field {
	f := m.text(key, label, "")
	f.input.EchoMode = textinput.EchoPassword
	f.input.CharLimit = 200
	return f
}

// pick makes a choice field.
func (m *Model) pick(key, label string, choices ...string) *field {
	return &field{key: key, label: label, choices: choices, input: m.newInput()}
}

func (f *formScreen) get(key string) string {
	for _, fl := range f.fields {
		if fl.key == key {
			return strings.TrimSpace(fl.value())
		}
	}
	return ""
}

// raw returns a field's value untrimmed (passwords).
func (f *formScreen) raw(key string) string {
	for _, fl := range f.fields {
		if fl.key == key {
			return fl.value()
		}
	}
	return ""
}

func (f *formScreen) isVisible(i int) bool {
	return f.fields[i].visible == nil || f.fields[i].visible(f)
}

func (f *formScreen) focusField(i int) {
	for j, fl := range f.fields {
		if j == i {
			fl.input.Focus()
		} else {
			fl.input.Blur()
		}
	}
	f.focus = i
}

func (f *formScreen) move(d int) {
	n := len(f.fields)
	for i, j := 0, f.focus; i < n; i++ {
		j = (j + d + n) % n
		if f.isVisible(j) {
			f.focusField(j)
			return
		}
	}
}

func (f *formScreen) lastVisible() int {
	for i := len(f.fields) - 1; i >= 0; i-- {
		if f.isVisible(i) {
			return i
		}
	}
	return 0
}

// fail shows a service error; an invalid field takes the focus.
func (f *formScreen) fail(err error) {
	ae := app.AsError(err)
	f.errMsg = errorText(err)
	f.errField = ""
	if ae.Field == "" {
		return
	}
	for i, fl := range f.fields {
		if ae.Field == fl.key || strings.HasPrefix(ae.Field, fl.key+".") {
			f.errField = fl.key
			if f.isVisible(i) {
				f.focusField(i)
			}
			return
		}
	}
}

func (f *formScreen) handle(m *Model, k tea.KeyMsg) tea.Cmd {
	fl := f.fields[f.focus]
	switch k.String() {
	case "tab", "down":
		f.move(1)
		return nil
	case "shift+tab", "up":
		f.move(-1)
		return nil
	case "ctrl+s":
		return f.submit(m, f)
	case "enter":
		if f.focus == f.lastVisible() {
			return f.submit(m, f)
		}
		f.move(1)
		return nil
	}
	if len(fl.choices) > 0 {
		switch k.String() {
		case "left", "h":
			fl.choice = (fl.choice + len(fl.choices) - 1) % len(fl.choices)
		case "right", "l", " ":
			fl.choice = (fl.choice + 1) % len(fl.choices)
		}
		return nil
	}
	var cmd tea.Cmd
	fl.input, cmd = fl.input.Update(k)
	return cmd
}

func (f *formScreen) body(m *Model, w, h int) []string {
	out := []string{}
	for _, l := range f.intro {
		out = append(out, " "+m.st.dim.Render(l))
	}
	if len(f.intro) > 0 {
		out = append(out, "")
	}
	labelW := 4
	for _, fl := range f.fields {
		labelW = max(labelW, len(fl.label))
	}
	labelW += 2
	inputW := max(w-labelW-6, 10)
	for i, fl := range f.fields {
		if !f.isVisible(i) {
			continue
		}
		mark := "  "
		if i == f.focus {
			mark = "> "
		}
		if fl.key == f.errField {
			mark = "! "
		}
		var val string
		if len(fl.choices) > 0 {
			var parts []string
			for j, c := range fl.choices {
				if j == fl.choice {
					parts = append(parts, m.st.tabActive.Render("["+c+"]"))
				} else {
					parts = append(parts, " "+c+" ")
				}
			}
			val = strings.Join(parts, "")
		} else {
			fl.input.Width = inputW
			val = fl.input.View()
		}
		lbl := m.st.label.Render(fit(fl.label, labelW))
		out = append(out, " "+mark+lbl+val)
		if i == f.focus && fl.help != "" {
			out = append(out, " "+strings.Repeat(" ", 2+labelW)+m.st.dim.Render(fl.help))
		}
	}
	out = append(out, "")
	if f.errMsg != "" {
		out = append(out, " "+m.st.errText.Render(sanitize(f.errMsg)))
	}
	return out
}

func (f *formScreen) hints(m *Model) []hint {
	hs := []hint{{"tab/↑/↓", "move"}}
	if len(f.fields) > 0 && len(f.fields[f.focus].choices) > 0 {
		hs = append(hs, hint{"←/→", "choose"})
	}
	hs = append(hs, hint{"enter", "next/submit"}, hint{"ctrl+s", "submit"})
	if !f.base {
		hs = append(hs, hint{"esc", "cancel"})
	}
	return hs
}
