package tui

import (
	"sort"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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
				m.showFileOnce("Private key", "The private key of "+g.Key.Fingerprint+":", g.PrivateKey,
					"", "Save it as ~/.ssh/ccp_ed25519 (chmod 600) and use ssh -i ~/.ssh/ccp_ed25519.")
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
