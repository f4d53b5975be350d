package tui

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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

// defaultExpiry is the expiry choice that leaves it to the service (its default lifetime,
// shortened to the server's maximum), offered when no preset is short enough.
const defaultExpiry = "default"

// tokenExpiryChoices are the token form's expiries, as the service allows them: its
// default lifetime first, then the other presets within the server's maximum lifetime,
// then "never" when tokens may live forever.
func tokenExpiryChoices(m *Model) []string {
	days, never := m.svc.TokenExpiryChoices()
	var out []string
	for _, d := range days {
		c := strconv.Itoa(d) + " days"
		if d == app.TokenDefaultExpiryDays {
			out = append([]string{c}, out...)
		} else {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		out = append(out, defaultExpiry)
	}
	if never {
		out = append(out, "never")
	}
	return out
}

func createTokenForm(m *Model) *formScreen {
	access := []string{"read-write", "read-only"}
	if m.p.Role == app.RoleViewer {
		access = []string{"read-only", "read-write"} // a viewer's token can only read anyway
	}
	f := m.newForm("Create access token",
		m.text("name", "Name", "e.g. laptop-cli"),
		m.pick("write", "Access", access...),
		m.pick("expires_at", "Expires", tokenExpiryChoices(m)...))
	f.submit = func(m *Model, f *formScreen) tea.Cmd {
		name := f.get("name")
		write := f.get("write") == "read-write"
		in := app.TokenInput{Name: &name, Write: &write}
		switch exp := f.get("expires_at"); exp {
		case "never":
			in.ExpiresAt = json.RawMessage(`"never"`)
		case defaultExpiry: // the service's default lifetime
		default:
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
