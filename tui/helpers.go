package tui

import (
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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
	m.push(m.oncePage(title, what, value))
}

// showFileOnce is showOnce for a secret meant to be saved as a file (a private key): its
// lines are shown verbatim, so what is copied from the terminal is the file. note follows.
func (m *Model) showFileOnce(title, what, content string, note ...string) {
	t := m.oncePage(title, what, nil)
	t.verbatim = map[int]bool{}
	for _, l := range strings.Split(strings.TrimRight(content, "\n"), "\n") {
		t.verbatim[len(t.lines)] = true
		t.lines = append(t.lines, l)
	}
	t.lines = append(t.lines, note...)
	m.push(t)
}

func (m *Model) oncePage(title, what string, value []string) *textScreen {
	lines := []string{m.st.title.Render(title), "", what, "It is shown only this once; copy it now.", ""}
	return &textScreen{name: title, lines: append(lines, value...), done: "done"}
}

func formError(field, msg string) error {
	return &app.Error{Kind: app.KindInvalid, Code: app.InvalidFieldCode(field), Field: field, Message: msg}
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
