package tui

import (
	"context"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// TestGoldenAdminViews draws every admin view at 80×24 and 120×40.
func TestGoldenAdminViews(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, size := range []struct{ w, h int }{{80, 24}, {120, 40}} {
		d := e.open(e.admin, size.w, size.h)
		suffix := "_" + strconv.Itoa(size.w) + "x" + strconv.Itoa(size.h)
		d.golden("admin_dashboard" + suffix)
		for _, v := range []string{"users", "hosts", "egress", "bindings", "tokens", "tasks", "events", "keys", "password"} {
			d.press(":" + v)
			d.press("enter")
			d.golden("admin_" + v + suffix)
		}
	}
}

// TestGoldenNavigation covers tab, details, help, the filter and the view command.
func TestGoldenNavigation(t *testing.T) {
	e := newEnv(t)
	e.seed()
	d := e.open(e.admin, 80, 24)
	d.press("tab")
	d.contains("Users (4)")
	d.press("shift+tab", "shift+tab")
	d.contains("[passwd]")

	d.press(":hosts", "enter", "enter")
	d.golden("host_detail")
	d.press("esc")
	d.contains("Hosts (2)")

	d.press("?")
	d.golden("help_hosts")
	d.press("esc")

	d.press(":users", "enter", "/", "al")
	d.golden("users_filter_typing")
	d.press("enter")
	d.golden("users_filtered")
	d.press("esc")
	d.contains("Users (4)")

	d.press(":nope", "enter")
	d.contains("unknown view nope")
	d.press(":h", "enter")
	d.contains("Hosts (2)")

	d.press("q")
	if !d.quit {
		t.Fatal("q did not quit")
	}
}

// TestGoldenCreateUser shows the service's validation messages in the form, field by
// field, then the created user.
func TestGoldenCreateUser(t *testing.T) {
	e := newEnv(t)
	e.seed()
	d := e.open(e.admin, 80, 24)
	d.press(":users", "enter", "c")
	d.golden("user_create_empty")
	d.press("Al", "tab", "short", "ctrl+s")
	d.golden("user_create_bad_username")
	// The service named the username: it has the focus.
	d.press("backspace", "backspace", "alice2", "ctrl+s")
	d.golden("user_create_bad_password")
	// Now the password has it.
	d.press("-long-enough", "tab", "right", "tab", "2027-01-31", "enter")
	d.golden("user_created")
	u, err := e.svc.CheckPassword(context.Background(), "alice2", "short-long-enough")
	if err != nil || u.Role != app.RoleViewer || u.ExpiresAt == nil || u.ExpiresAt.Format(time.DateOnly) != "2027-01-31" {
		t.Fatalf("created user: %+v, %v", u, err)
	}
}

// TestGoldenHostActions: confirmations, and the service's refusal of a busy host.
func TestGoldenHostActions(t *testing.T) {
	e := newEnv(t)
	e.seed()
	d := e.open(e.admin, 80, 24)
	d.press(":hosts", "enter", "s")
	d.golden("host_confirm_start")
	d.press("y")
	d.golden("host_start_busy")
	d.press("d")
	d.contains("delete with home")
	d.press("n")
	d.contains("cancelled")

	d.press("c")
	d.press("bob", "enter", "enter", "x")
	d.press("enter", "enter", "enter", "enter")
	d.contains("cpu must be a number of cores")
	d.press("backspace", "2", "enter", "enter", "100000", "enter", "enter")
	d.contains("pids must be between 64 and 32768")
	d.m.top().(*formScreen).fields[4].input.SetValue("256")
	d.press("ctrl+s")
	d.golden("host_created")
	d.contains("Hosts (3)")
}

// TestGoldenEgressForm: the wireguard and proxy variants of the form and a proxy_config
// error from the service.
func TestGoldenEgressForm(t *testing.T) {
	e := newEnv(t)
	e.seed()
	d := e.open(e.admin, 80, 24)
	d.press(":egress", "enter", "c")
	d.golden("egress_create_wireguard")
	d.press("ams-2", "tab", "198.51.100.9", "tab", "right")
	d.golden("egress_create_proxy")
	d.press("tab", "tab", `{"type":"socks","server_port":1080}`, "ctrl+s")
	d.golden("egress_create_proxy_error")
	f := d.m.top().(*formScreen)
	f.fields[len(f.fields)-1].input.SetValue(`{"type":"socks","server":"px.example.net","server_port":1080}`)
	d.press("ctrl+s")
	d.contains("created egress IP ams-2 (198.51.100.9, proxy)")
	d.press("d", "y")
	d.contains("deleted egress IP ams-2")
	// fra-1 is bound: the service refuses and says why.
	d.press("d", "y")
	d.contains("egress IP is bound to hosts")
}

// TestGoldenBindings: unbind and bind through the form, by short id and label.
func TestGoldenBindings(t *testing.T) {
	e := newEnv(t)
	e.seed()
	d := e.open(e.admin, 80, 24)
	d.press(":bindings", "enter", "d", "y")
	d.contains("unbound host")
	d.contains("Bindings (0)")
	hs, _ := e.svc.ListHosts(context.Background(), e.admin)
	sortHosts(hs)
	d.press("c", hs[1].ShortID, "enter", "nope", "enter")
	d.contains("egress IP not found")
	d.m.top().(*formScreen).fields[1].input.SetValue("fra-1")
	d.press("enter")
	d.golden("binding_created")
}

// TestGoldenViewer: the same views, without change hints, and a change refused.
func TestGoldenViewer(t *testing.T) {
	e := newEnv(t)
	e.seed()
	vera := e.login("vera", "password-vera")
	d := e.open(vera, 80, 24)
	d.press(":users", "enter")
	d.golden("viewer_users")
	d.press("c")
	d.golden("viewer_users_create_refused")
	if _, ok := d.m.top().(*listScreen); !ok {
		t.Fatal("the viewer got a form")
	}
	d.press(":hosts", "enter", "d")
	d.contains("read-only")
	d.press(":tokens", "enter", "d")
	d.contains("read-only")
}

// TestGoldenUserViews: a user's own hosts, keys, tokens and password; enter connects.
func TestGoldenUserViews(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	d := e.open(alice, 80, 24)
	d.golden("user_hosts")
	d.press("i")
	d.golden("user_host_detail")
	d.press("esc", "r")
	d.contains("Rebuild host")
	d.press("y")
	d.contains("host has a host.create task")
	for _, v := range []string{"keys", "tokens", "password"} {
		d.press(":"+v, "enter")
		d.golden("user_" + v)
	}
	d.press(":users", "enter")
	d.contains("unknown view users")

	d.press(":hosts", "enter", "enter")
	if !d.quit {
		t.Fatal("enter on a host did not end the program")
	}
	hs, _ := e.svc.ListOwnHosts(context.Background(), alice)
	if got := d.m.Result().ConnectHostID; got != hs[0].ID {
		t.Fatalf("ConnectHostID = %q, want %q", got, hs[0].ID)
	}
}

// TestGoldenTokenShownOnce creates a token and shows its value once.
func TestGoldenTokenShownOnce(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	d := e.open(alice, 80, 24)
	d.press(":tokens", "enter", "c")
	d.golden("token_create_form")
	d.press("deploy", "tab", "right", "tab", "right", "enter")
	d.golden("token_created_once")
	if !tokenRE.MatchString(ansi.Strip(d.m.View())) {
		t.Fatal("the token value is not shown")
	}
	d.press("enter")
	d.contains("deploy")
	d.lacks("ccp_")
	ts, _ := e.svc.ListTokens(context.Background(), alice)
	var got app.TokenView
	for _, tk := range ts {
		if tk.Name == "deploy" {
			got = tk
		}
	}
	if got.Write || got.ExpiresAt == nil || got.ExpiresAt.Format(time.DateOnly) != "2026-11-30" {
		t.Fatalf("deploy token: %+v", got)
	}
	d.press("up", "a")
	d.contains("token ci is now inactive")
	d.press("d", "y")
	d.contains("revoked access token ci")
}

func TestTUISSHKeys(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	d := e.open(alice, 80, 24)
	d.press(":keys", "enter", "a")
	d.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("ssh-ed25519 not-a-key"), Paste: true})
	d.press("ctrl+s")
	d.contains("public_key is not a valid OpenSSH public key")
	d.m.top().(*formScreen).fields[0].input.SetValue("")
	d.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(testPubKey), Paste: true})
	d.press("ctrl+s")
	d.contains("this key is already registered") // the service's conflict
	d.press("esc", "g")
	d.contains("Generate an ed25519 key pair?")
	d.press("y")
	d.contains("BEGIN OPENSSH PRIVATE KEY")
	d.press("enter")
	d.contains("SSH Keys (2)")
	d.press("end", "d", "y")
	d.contains("deleted SSH key")
	d.contains("SSH Keys (1)")
}

func TestTUIChangePassword(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	d := e.open(alice, 80, 24)
	d.press(":password", "enter", "enter")
	d.golden("password_form")
	d.press("password-alice", "tab", "new-password-1", "tab", "new-password-2", "enter")
	d.contains("the new passwords do not match")
	d.m.top().(*formScreen).fields[2].input.SetValue("new-password-1")
	d.m.top().(*formScreen).fields[0].input.SetValue("wrong")
	d.press("ctrl+s")
	d.contains("old password is incorrect")
	d.m.top().(*formScreen).fields[0].input.SetValue("password-alice")
	d.press("ctrl+s")
	d.contains("password changed")
	if _, err := e.svc.CheckPassword(context.Background(), "alice", "new-password-1"); err != nil {
		t.Fatal(err)
	}
}

// TestGoldenLiveTask: a host detail with an active task polls every second, updates when
// the task finishes, and stops polling.
func TestGoldenLiveTask(t *testing.T) {
	e := newEnv(t)
	alice, _ := e.user("alice", app.RoleUser)
	hc := e.host(alice.ID, "")
	d := e.open(e.admin, 80, 24)
	d.press(":hosts", "enter", "enter")
	d.contains("waiting for a worker")
	if d.ticks != 1 {
		t.Fatalf("a detail with an active task asked for %d ticks, want 1", d.ticks)
	}
	e.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.svc.WaitTask(ctx, hc.Task.ID); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		h, _ := e.svc.GetHost(ctx, e.admin, hc.Host.ID)
		if h.ActiveTaskID == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("host still busy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.send(tickMsg{})
	d.golden("host_detail_task_failed")
	if d.ticks != 1 {
		t.Fatalf("polling went on after the task ended: %d ticks", d.ticks)
	}
	d.press(":tasks", "enter")
	if d.ticks != 2 {
		t.Fatalf("the tasks view did not poll: %d ticks", d.ticks)
	}
	d.golden("tasks_failed")
}

// TestTUIRandomKeys presses random keys in every view, for each role and at odd sizes:
// the model must not panic and must always fill the terminal exactly.
func TestTUIRandomKeys(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	e.start() // tasks fail (no engine): hosts get errors, tasks steps
	vera := e.login("vera", "password-vera")
	keys := []string{"up", "down", "enter", "esc", "tab", "shift+tab", "left", "right", "ctrl+s", "backspace",
		"pgdown", "pgup", "home", "end", "space", "/", ":", "?", "c", "d", "s", "x", "r", "w", "b", "a", "g",
		"i", "p", "t", "y", "n", "k", "j", "q", "1", "-", "hosts", "users"}
	rng := rand.New(rand.NewPCG(1, 2))
	colour := lipgloss.NewRenderer(io.Discard)
	colour.SetColorProfile(termenv.ANSI256) // as the door sets it
	for _, p := range []app.Principal{e.admin, vera, alice} {
		for i, size := range []struct{ w, h int }{{80, 24}, {120, 40}, {40, 10}, {200, 12}} {
			d := e.open(p, size.w, size.h, func(o *Options) {
				if i%2 == 0 {
					o.Renderer = colour // styled output must survive sanitising
				}
			})
			for i := 0; i < 400; i++ {
				k := keys[rng.IntN(len(keys))]
				if k == "q" || (k == "enter" && p.Role == app.RoleUser && rng.IntN(4) > 0) {
					continue // stay in the program
				}
				d.press(k)
				if i%7 == 0 {
					d.send(tickMsg{})
				}
				view := ansi.Strip(d.m.View())
				if strings.Contains(view, "?[") {
					t.Fatalf("%s after %q: an escape sequence was mangled:\n%s", p.Username, k, view)
				}
				lines := strings.Split(view, "\n")
				if len(lines) != size.h {
					t.Fatalf("%s %dx%d after %q: %d lines", p.Username, size.w, size.h, k, len(lines))
				}
				for _, l := range lines {
					if ansi.StringWidth(l) > size.w {
						t.Fatalf("%s %dx%d after %q: a line of %d cells: %q", p.Username, size.w, size.h, k, ansi.StringWidth(l), l)
					}
				}
			}
		}
	}
}

// TestTUIRecheck: a demoted admin loses the change keys at the next key press; a disabled
// account's session ends.
func TestTUIRecheck(t *testing.T) {
	e := newEnv(t)
	e.seed()
	u, _ := e.user("root2", app.RoleAdmin)
	p := e.login("root2", "password-root2")
	d := e.open(p, 80, 24, func(o *Options) { o.Recheck = e.svc.LoginAllowed })
	d.press(":users", "enter")
	d.contains("<c> create")
	viewer := app.RoleViewer
	if _, err := e.svc.PatchUser(context.Background(), e.admin, u.ID, app.PatchUserInput{Role: &viewer}); err != nil {
		t.Fatal(err)
	}
	d.press("c")
	d.contains("your role is now viewer")
	d.contains("root2 (viewer, read-only)")
	d.press(":users", "enter", "c")
	d.contains("read-only")
	disabled := app.UserDisabled
	if _, err := e.svc.PatchUser(context.Background(), e.admin, u.ID, app.PatchUserInput{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	d.press("down")
	if !d.quit || d.m.Result().Ended == "" {
		t.Fatalf("a disabled account's TUI went on: quit %v, result %+v", d.quit, d.m.Result())
	}
}

// TestTUIStyledDetail: with colours, styled values in a detail (an error, a task state)
// reach the terminal as escape sequences, not neutralised into "?[…".
func TestTUIStyledDetail(t *testing.T) {
	e := newEnv(t)
	alice, _ := e.user("alice", app.RoleUser)
	hc := e.host(alice.ID, "")
	e.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.svc.WaitTask(ctx, hc.Task.ID); err != nil {
		t.Fatal(err)
	}
	for {
		h, _ := e.svc.GetHost(ctx, e.admin, hc.Host.ID)
		if h.ActiveTaskID == "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("host still busy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	colour := lipgloss.NewRenderer(io.Discard)
	colour.SetColorProfile(termenv.ANSI256) // as the door sets it
	d := e.open(e.admin, 80, 24, func(o *Options) { o.Renderer = colour })
	d.press(":hosts", "enter", "enter")
	view := ansi.Strip(d.m.View())
	if !strings.Contains(view, "Last error      no container engine is configured") || strings.Contains(view, "?[") {
		t.Fatalf("styled detail:\n%s", view)
	}
	if !strings.Contains(d.m.View(), "\x1b[") {
		t.Fatal("no colours with an ANSI256 renderer")
	}
}

// TestTUIAltIsEscThenKey: esc and a key sent together arrive as alt+key.
func TestTUIAltIsEscThenKey(t *testing.T) {
	e := newEnv(t)
	e.seed()
	d := e.open(e.admin, 80, 24)
	d.press(":hosts", "enter", "enter")
	d.contains("Active task")
	d.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(":users"), Alt: true})
	d.press("enter")
	d.contains("Users (4)")
}
