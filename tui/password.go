package tui

import (
	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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
		" " + m.kv("Username", a.me.Username), " " + m.kv("Role", a.me.Role.String()), " " + m.kv("Status", a.me.Status.String()),
		" " + m.kv("Expires", fmtTimeP(a.me.ExpiresAt, "never")), " " + m.kv("Signed in by", m.p.Method.String()),
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
