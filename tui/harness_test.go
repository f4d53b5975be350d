package tui

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// env is a real service on a temporary bbolt file. Its task workers do not run unless a
// test starts them, so queued tasks stay queued and views stay deterministic.
type env struct {
	t     *testing.T
	svc   *app.Service
	clk   *testenv.Clock
	te    *testenv.Env
	ctx   context.Context
	admin app.Principal
}

func newEnv(t *testing.T, config ...func(*app.Config)) *env {
	t.Helper()
	te := testenv.NewService(t, testenv.WithRuntime(app.NoRuntime{}), testenv.WithConfig(func(c *app.Config) {
		c.TokenHashKey, c.ReconcileInterval = []byte("token-hash-key-for-tests"), -1
		c.PublicHost, c.SSHProxyPort = "ccp.example.net", 2222
		for _, f := range config {
			f(c)
		}
	}))
	svc, clk := te.Service, te.Clock
	e := &env{t: t, svc: svc, clk: clk, te: te, ctx: context.Background()}
	if _, err := svc.EnsureAdmin(e.ctx, "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	e.admin = e.login("admin", "admin-password")
	return e
}

// start runs the task workers until the test ends.
func (e *env) start() { e.te.Start() }

func (e *env) login(user, pw string) app.Principal {
	e.t.Helper()
	p, err := e.svc.SSHPasswordLogin(e.ctx, "192.0.2.10", user, pw, false)
	if err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return p
}

func (e *env) tick() { e.clk.Add(time.Minute) }

func (e *env) user(name string, role app.Role) (app.UserView, app.Principal) {
	e.t.Helper()
	e.tick()
	u, err := e.svc.CreateUser(e.ctx, e.admin, app.CreateUserInput{Username: name, Password: "password-" + name, Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	return u, e.login(name, "password-"+name)
}

func (e *env) host(userID, egressID string) app.HostCreated {
	e.t.Helper()
	e.tick()
	h, err := e.svc.CreateHost(e.ctx, e.admin, app.CreateHostInput{UserID: userID, EgressIPID: egressID})
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *env) egress(label, ip string) app.EgressView {
	e.t.Helper()
	e.tick()
	cfg := []byte(`{"type":"socks","server":"proxy.example.net","server_port":1080}`)
	raw := json.RawMessage(cfg)
	tt := app.TunnelProxy
	v, err := e.svc.CreateEgress(e.ctx, e.admin, app.EgressInput{Label: &label, IPAddress: &ip, TunnelType: &tt, ProxyConfig: &raw})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// seed builds a small, fixed world: users of each role, an egress IP, hosts, a binding,
// an access token and an SSH key.
func (e *env) seed() (alice app.UserView, alicePr app.Principal) {
	e.t.Helper()
	alice, alicePr = e.user("alice", app.RoleUser)
	bob, _ := e.user("bob", app.RoleUser)
	e.user("vera", app.RoleViewer)
	eg := e.egress("fra-1", "203.0.113.7")
	e.host(alice.ID, eg.ID)
	e.host(bob.ID, "")
	e.tick()
	name, days := "ci", 30
	if _, err := e.svc.CreateToken(e.ctx, alicePr, app.TokenInput{Name: &name, ExpiresInDays: &days}); err != nil {
		e.t.Fatal(err)
	}
	e.tick()
	if _, err := e.svc.AddSSHKey(e.ctx, alicePr, alice.ID, app.AddKeyInput{PublicKey: testPubKey, Name: "laptop"}); err != nil {
		e.t.Fatal(err)
	}
	e.tick()
	return alice, alicePr
}

// testPubKey is a fixed ed25519 public key, so its fingerprint is stable in golden files.
const testPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk alice@laptop"

// mask replaces every random identifier the store holds with a stable placeholder of the
// same length, so golden files do not depend on uuids, short ids or token hints.
func (e *env) mask(s string) string {
	e.t.Helper()
	type id struct{ v, kind string }
	var ids []id
	add := func(kind string, vs ...string) {
		for _, v := range vs {
			if v != "" {
				ids = append(ids, id{v, kind})
			}
		}
	}
	ctx := e.ctx
	us, _ := e.svc.ListUsers(ctx, e.admin)
	sort.Slice(us, func(i, j int) bool { return us[i].Username < us[j].Username })
	for _, u := range us {
		add("user", u.ID)
		ks, _ := e.svc.ListSSHKeys(ctx, e.admin, u.ID)
		sort.Slice(ks, func(i, j int) bool { return ks[i].CreatedAt.Before(ks[j].CreatedAt) })
		for _, k := range ks {
			add("skey", k.ID)
		}
	}
	hs, _ := e.svc.ListHosts(ctx, e.admin)
	sortHosts(hs)
	for _, h := range hs {
		add("host", h.ID)
		add("short", h.ShortID)
	}
	es, _ := e.svc.ListEgress(ctx, e.admin)
	sort.Slice(es, func(i, j int) bool { return es[i].Label < es[j].Label })
	for _, x := range es {
		add("egrs", x.ID)
	}
	bs, _ := e.svc.ListBindings(ctx, e.admin)
	sort.Slice(bs, func(i, j int) bool { return bs[i].CreatedAt.Before(bs[j].CreatedAt) })
	for _, b := range bs {
		add("bind", b.ID)
	}
	ts, _ := e.svc.ListTasks(ctx, e.admin, app.TaskFilter{Limit: 1000})
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].CreatedAt.Before(ts[j].CreatedAt) })
	for _, t := range ts {
		add("task", t.ID)
	}
	toks, _ := e.svc.ListAllTokens(ctx, e.admin, "")
	sort.Slice(toks, func(i, j int) bool { return toks[i].Name < toks[j].Name })
	for _, t := range toks {
		add("tokn", t.ID)
		add("hint", t.Hint)
	}
	n := map[string]int{}
	for _, x := range ids {
		n[x.kind]++
		var ph string
		switch x.kind {
		case "short":
			ph = fmt.Sprintf("hs%06d", n[x.kind])
		case "hint":
			ph = fmt.Sprintf("…h%03d", n[x.kind])
		default:
			ph = fmt.Sprintf("%s%04d-0000-0000-0000-000000000000", x.kind, n[x.kind])
		}
		if len(ph) != len(x.v) && x.kind != "hint" {
			e.t.Fatalf("placeholder %q for %q has another length", ph, x.v)
		}
		s = strings.ReplaceAll(s, x.v, ph)
		if len(x.v) == 36 {
			s = strings.ReplaceAll(s, x.v[:8], ph[:8])
		}
	}
	s = tokenRE.ReplaceAllStringFunc(s, func(v string) string { return "ccp_" + strings.Repeat("X", len(v)-4) })
	return s
}

var tokenRE = regexp.MustCompile(`ccp_[0-9A-Za-z]{42}`)

// driver feeds messages to a Model as the bubbletea runtime would, running the commands
// it returns synchronously (there are no timers: the poll tick is recorded, not run).
type driver struct {
	t     *testing.T
	e     *env
	m     *Model
	w, h  int
	quit  bool
	ticks int // poll ticks the model asked for
}

func (e *env) open(p app.Principal, w, h int, opts ...func(*Options)) *driver {
	e.t.Helper()
	r := lipgloss.NewRenderer(io.Discard, termenv.WithProfile(termenv.Ascii))
	o := Options{Renderer: r, Width: 80, Height: 24}
	for _, f := range opts {
		f(&o)
	}
	m := NewModel(e.svc, p, o)
	d := &driver{t: e.t, e: e, m: m, w: w, h: h}
	m.tick = func(time.Duration) tea.Cmd {
		d.ticks++
		return nil
	}
	d.run(m.Init())
	d.send(tea.WindowSizeMsg{Width: w, Height: h})
	return d
}

func (d *driver) send(msgs ...tea.Msg) {
	d.t.Helper()
	for _, msg := range msgs {
		_, cmd := d.m.Update(msg)
		d.run(cmd)
	}
}

func (d *driver) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	switch msg := cmd().(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			d.run(c)
		}
	case tea.QuitMsg:
		d.quit = true
	default:
		d.send(msg)
	}
}

var keyNames = map[string]tea.KeyType{
	"enter": tea.KeyEnter, "esc": tea.KeyEsc, "tab": tea.KeyTab, "shift+tab": tea.KeyShiftTab,
	"up": tea.KeyUp, "down": tea.KeyDown, "left": tea.KeyLeft, "right": tea.KeyRight,
	"ctrl+s": tea.KeyCtrlS, "ctrl+c": tea.KeyCtrlC, "ctrl+r": tea.KeyCtrlR, "backspace": tea.KeyBackspace,
	"space": tea.KeySpace, "pgdown": tea.KeyPgDown, "pgup": tea.KeyPgUp, "home": tea.KeyHome, "end": tea.KeyEnd,
}

// press sends named keys ("enter", "down") or, for anything else, each rune of the text.
func (d *driver) press(keys ...string) {
	d.t.Helper()
	for _, k := range keys {
		if kt, ok := keyNames[k]; ok {
			d.send(tea.KeyMsg{Type: kt})
			continue
		}
		for _, r := range k {
			if r == ' ' {
				d.send(tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}})
				continue
			}
			d.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
		}
	}
}

// screen is the current view without colours, identifiers masked.
func (d *driver) screen() string {
	d.t.Helper()
	return d.e.mask(ansi.Strip(d.m.View()))
}

// golden compares the screen with testdata/<name>.golden (rewritten with -update) and
// checks that it fills the terminal exactly.
func (d *driver) golden(name string) {
	d.t.Helper()
	raw := ansi.Strip(d.m.View())
	lines := strings.Split(raw, "\n")
	if len(lines) != d.h {
		d.t.Errorf("%s: %d lines, want %d", name, len(lines), d.h)
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > d.w {
			d.t.Errorf("%s: line %d is %d cells wide, terminal is %d: %q", name, i+1, w, d.w, l)
		}
	}
	got := d.e.mask(raw) + "\n"
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			d.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			d.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		d.t.Fatalf("%v (run go test ./tui/ -run Golden -update)", err)
	}
	if string(want) != got {
		d.t.Errorf("%s differs from %s (rerun with -update to accept)\n--- want\n%s\n--- got\n%s", name, path, want, got)
	}
}

func (d *driver) contains(sub string) {
	d.t.Helper()
	if s := d.screen(); !strings.Contains(s, sub) {
		d.t.Fatalf("screen lacks %q:\n%s", sub, s)
	}
}

func (d *driver) lacks(sub string) {
	d.t.Helper()
	if s := d.screen(); strings.Contains(s, sub) {
		d.t.Fatalf("screen has %q:\n%s", sub, s)
	}
}
