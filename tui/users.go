package tui

import (
	"sort"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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
				rows = append(rows, row{key: u.ID, item: u, cells: []string{u.Username, u.Role.String(), u.Status.String(),
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
					m.done("user " + u.Username + " is now " + to.String())
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
		m.kv("ID", u.ID), m.kv("Username", u.Username), m.kv("Role", u.Role.String()), m.kv("Status", u.Status.String()),
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
			out = append(out, "  "+h.ShortID+"  "+h.Status.String()+"  "+sanitize(h.Image))
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
		m.pick("role", "Role", app.RoleUser.String(), app.RoleViewer.String(), app.RoleAdmin.String()),
		exp)
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		at, err := parseDate("expires_at", f.get("expires_at"))
		if err != nil {
			f.fail(err)
			return nil
		}
		u, err := m.svc.CreateUser(m.ctx, m.p, app.CreateUserInput{Username: f.get("username"),
			Password: f.raw("password"), Role: app.Role(f.get("role")), ExpiresAt: at})
		if err != nil {
			f.fail(err)
			return nil
		}
		m.created(u.ID, "created user "+u.Username+" ("+u.Role.String()+")")
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
