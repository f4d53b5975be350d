package sshd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/x/ansi"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
)

// doorEnv is a Door on 127.0.0.1:0 over a real service on a temporary bbolt file, with the
// REST API of the same service behind httptest.
type doorEnv struct {
	t       *testing.T
	svc     *app.Service
	addr    string
	hostKey gossh.PublicKey
	rest    *httptest.Server
	admin   app.Principal
	door    *sshd.Door
}

type doorEnvOption func(*sshd.DoorConfig)

func newDoorEnv(t *testing.T, opts ...doorEnvOption) *doorEnv {
	t.Helper()
	te := testenv.NewService(t, testenv.WithRuntime(app.NoRuntime{}),
		testenv.WithDeps(func(d *app.Deps) { d.Clock = nil }), // the real clock
		testenv.WithConfig(func(c *app.Config) {
			c.TokenHashKey, c.ReconcileInterval, c.PublicHost = []byte("door-token-hash-key"), -1, "ccp.example.net"
		}))
	svc, log := te.Service, te.Logger
	ctx := context.Background()
	if _, err := svc.EnsureAdmin(ctx, "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sshd.DoorConfig{HostSigner: signer, Logger: log}
	for _, o := range opts {
		o(&cfg)
	}
	door, addr := serveDoor(t, svc, cfg)
	rest := httptest.NewServer(api.New(svc, api.Config{}, log).Handler())
	t.Cleanup(rest.Close)
	e := &doorEnv{t: t, svc: svc, addr: addr, hostKey: signer.PublicKey(), rest: rest, door: door}
	e.admin, err = svc.SSHPasswordLogin(ctx, "127.0.0.1", "admin", "admin-password", false)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// serveDoor runs a door with cfg on 127.0.0.1:0 until the test ends, and returns it with
// its address. The door is shut down at the end, and Serve must then return nil.
func serveDoor(t *testing.T, svc *app.Service, cfg sshd.DoorConfig) (*sshd.Door, string) {
	t.Helper()
	door, err := sshd.NewDoor(svc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- door.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = door.Shutdown(sctx)
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return door, ln.Addr().String()
}

func (e *doorEnv) user(name string, role app.Role) app.UserView {
	e.t.Helper()
	u, err := e.svc.CreateUser(context.Background(), e.admin, app.CreateUserInput{Username: name, Password: "password-" + name, Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *doorEnv) dial(user string, auth ...gossh.AuthMethod) (*gossh.Client, error) {
	return gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: user, Auth: auth,
		HostKeyCallback: gossh.FixedHostKey(e.hostKey), Timeout: 10 * time.Second})
}

func (e *doorEnv) mustDial(user string, auth ...gossh.AuthMethod) *gossh.Client {
	e.t.Helper()
	c, err := e.dial(user, auth...)
	if err != nil {
		e.t.Fatalf("dial as %s: %v", user, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// exec runs one command without a PTY and returns its output and exit status.
func (e *doorEnv) exec(c *gossh.Client, cmd string) (stdout, stderr string, code int) {
	e.t.Helper()
	s, err := c.NewSession()
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		e.t.Fatalf("command %q did not finish", cmd)
	}
	var ee *gossh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitStatus()
	default:
		e.t.Fatalf("command %q: %v", cmd, err)
	}
	return out.String(), errb.String(), code
}

func doorPassword(pw string) gossh.AuthMethod { return gossh.Password(pw) }

func TestDoorCommandMode(t *testing.T) {
	e := newDoorEnv(t)
	alice := e.user("alice", app.RoleUser)
	h, err := e.svc.CreateHost(context.Background(), e.admin, app.CreateHostInput{UserID: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	c := e.mustDial("admin", doorPassword("admin-password"))

	out, errs, code := e.exec(c, "hosts")
	if code != 0 || !strings.Contains(out, "HOST") || !strings.Contains(out, h.Host.ShortID) || !strings.Contains(out, "alice") {
		t.Fatalf("hosts: code %d, stdout %q, stderr %q", code, out, errs)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("command output holds escape sequences: %q", out)
	}

	out, _, code = e.exec(c, "whoami")
	if code != 0 || !strings.Contains(out, "username: admin") || !strings.Contains(out, "role:     admin") ||
		!strings.Contains(out, "access:   read-write") || !strings.Contains(out, "auth:     ssh_password") {
		t.Fatalf("whoami: code %d, %q", code, out)
	}

	for _, cmd := range []string{"users", "tasks", "events", "egress", "bindings", "tokens", "keys"} {
		out, errs, code := e.exec(c, cmd)
		if code != 0 || out == "" {
			t.Errorf("%s: code %d, stdout %q, stderr %q", cmd, code, out, errs)
		}
	}
	if out, _, _ := e.exec(c, "users"); !strings.Contains(out, "USERNAME") || !strings.Contains(out, "alice") {
		t.Errorf("users: %q", out)
	}
	if out, _, _ := e.exec(c, "tasks"); !strings.Contains(out, "host.create") {
		t.Errorf("tasks: %q", out)
	}

	out, errs, code = e.exec(c, "frobnicate")
	if code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: code %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, errs, code = e.exec(c, "hosts extra"); code != 2 {
		t.Fatalf("hosts with an argument: code %d, stderr %q", code, errs)
	}

	// With a PTY (ssh -t) lines end in \r\n for the client's raw terminal.
	ps, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	raw, err := ps.Output("whoami")
	if err != nil || !strings.Contains(string(raw), "username: admin\r\nuser id:") {
		t.Fatalf("whoami with a PTY: %v %q", err, raw)
	}

	// No command and no PTY: a usage text, never a hang.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	s.Stdout = &buf
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shell without PTY: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shell without PTY hangs")
	}
	if !strings.Contains(buf.String(), "ssh USER@HOST hosts") {
		t.Fatalf("usage: %q", buf.String())
	}
}

func TestDoorUserCommands(t *testing.T) {
	e := newDoorEnv(t)
	alice := e.user("alice", app.RoleUser)
	bob := e.user("bob", app.RoleUser)
	ha, err := e.svc.CreateHost(context.Background(), e.admin, app.CreateHostInput{UserID: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := e.svc.CreateHost(context.Background(), e.admin, app.CreateHostInput{UserID: bob.ID})
	if err != nil {
		t.Fatal(err)
	}
	c := e.mustDial("alice", doorPassword("password-alice"))
	out, _, code := e.exec(c, "hosts")
	if code != 0 || !strings.Contains(out, ha.Host.ShortID) || strings.Contains(out, hb.Host.ShortID) {
		t.Fatalf("alice's hosts: code %d, %q", code, out)
	}
	// The service refuses admin listings to a user; the door reports its answer.
	_, errs, code := e.exec(c, "users")
	if code != 1 || !strings.Contains(errs, "administrator role required") {
		t.Fatalf("users as a user: code %d, stderr %q", code, errs)
	}
}

func TestDoorAuthRefusals(t *testing.T) {
	e := newDoorEnv(t)
	if c, err := e.dial("admin", doorPassword("wrong-password")); err == nil {
		c.Close()
		t.Fatal("a wrong password was accepted")
	}
	if c, err := e.dial("nobody", doorPassword("admin-password")); err == nil {
		c.Close()
		t.Fatal("an unknown user was accepted")
	}

	u := e.user("carol", app.RoleUser)
	disabled := app.UserDisabled
	if _, err := e.svc.PatchUser(context.Background(), e.admin, u.ID, app.PatchUserInput{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if c, err := e.dial("carol", doorPassword("password-carol")); err == nil {
		c.Close()
		t.Fatal("a disabled user was accepted")
	}

	// Disabled between authentication and the session: the session re-check refuses.
	d := e.user("dave", app.RoleUser)
	c := e.mustDial("dave", doorPassword("password-dave"))
	if _, err := e.svc.PatchUser(context.Background(), e.admin, d.ID, app.PatchUserInput{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	_, errs, code := e.exec(c, "whoami")
	if code != 1 || !strings.Contains(errs, "access denied") {
		t.Fatalf("session of a user disabled meanwhile: code %d, stderr %q", code, errs)
	}
}

func TestDoorKeyboardInteractiveAndPublicKey(t *testing.T) {
	e := newDoorEnv(t)
	alice := e.user("alice", app.RoleUser)

	kbd := gossh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
		ans := make([]string, len(qs))
		for i := range qs {
			ans[i] = "password-alice"
		}
		return ans, nil
	})
	c := e.mustDial("alice", kbd)
	if out, _, code := e.exec(c, "whoami"); code != 0 || !strings.Contains(out, "auth:     ssh_password") {
		t.Fatalf("keyboard-interactive whoami: %d %q", code, out)
	}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := gossh.NewSignerFromKey(priv)
	if c, err := e.dial("alice", gossh.PublicKeys(signer)); err == nil {
		c.Close()
		t.Fatal("an unregistered key was accepted")
	}
	k, err := e.svc.AddSSHKey(context.Background(), e.admin, alice.ID,
		app.AddKeyInput{PublicKey: string(gossh.MarshalAuthorizedKey(signer.PublicKey())), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := gossh.NewSignerFromKey(other)
	// An unknown key offered first, then the registered one: the session is the signer's.
	c = e.mustDial("alice", gossh.PublicKeys(otherSigner, signer))
	if out, _, code := e.exec(c, "whoami"); code != 0 || !strings.Contains(out, "auth:     ssh_key") || !strings.Contains(out, "username: alice") {
		t.Fatalf("public key whoami: %d %q", code, out)
	}
	// The key is deleted after authentication: the next session of that connection is refused.
	if err := e.svc.DeleteSSHKey(context.Background(), e.admin, alice.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := e.exec(c, "whoami"); code != 1 || !strings.Contains(errs, "access denied") {
		t.Fatalf("session with a deleted key: code %d, stderr %q", code, errs)
	}
}

// doorTerm is the client side of a PTY session: what the server drew, stripped of escape
// sequences, and a way to type.
type doorTerm struct {
	t     *testing.T
	sess  *gossh.Session
	stdin io.WriteCloser
	mu    sync.Mutex
	raw   bytes.Buffer
	mark  int
	done  chan error
}

func (e *doorEnv) openTerm(c *gossh.Client) *doorTerm {
	e.t.Helper()
	s, err := c.NewSession()
	if err != nil {
		e.t.Fatal(err)
	}
	tm := &doorTerm{t: e.t, sess: s, done: make(chan error, 1)}
	if err := s.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{}); err != nil {
		e.t.Fatal(err)
	}
	tm.stdin, err = s.StdinPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	s.Stderr = doorTermWriter{tm} // a terminal shows both streams
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := out.Read(b)
			tm.mu.Lock()
			tm.raw.Write(b[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	if err := s.Shell(); err != nil {
		e.t.Fatal(err)
	}
	go func() { tm.done <- s.Wait() }()
	e.t.Cleanup(func() { s.Close() })
	return tm
}

type doorTermWriter struct{ tm *doorTerm }

func (w doorTermWriter) Write(p []byte) (int, error) {
	w.tm.mu.Lock()
	defer w.tm.mu.Unlock()
	return w.tm.raw.Write(p)
}

// screen is everything drawn since the last type call.
func (tm *doorTerm) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return ansi.Strip(string(tm.raw.Bytes()[tm.mark:]))
}

// waitFor polls until the output since the last keystroke contains every string.
func (tm *doorTerm) waitFor(subs ...string) {
	tm.t.Helper()
	tm.waitWithin(10*time.Second, subs...)
}

// waitWithin is waitFor with a time limit.
func (tm *doorTerm) waitWithin(limit time.Duration, subs ...string) {
	tm.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		s := tm.screen()
		if strings.Contains(s, "?[") {
			tm.t.Fatalf("an escape sequence reached the terminal mangled:\n%s", s)
		}
		missing := ""
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				missing = sub
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the terminal never showed %q; it showed:\n%s\n(quoted: %q)", missing, s, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mark0 makes waitFor look only at what is drawn from now on.
func (tm *doorTerm) mark0() {
	tm.mu.Lock()
	tm.mark = tm.raw.Len()
	tm.mu.Unlock()
}

// typ sends keystrokes; what is drawn afterwards is what waitFor looks at.
func (tm *doorTerm) typ(keys string) {
	tm.t.Helper()
	tm.mu.Lock()
	tm.mark = tm.raw.Len()
	tm.mu.Unlock()
	if _, err := io.WriteString(tm.stdin, keys); err != nil {
		tm.t.Fatal(err)
	}
}

func (tm *doorTerm) wait() error {
	tm.t.Helper()
	select {
	case err := <-tm.done:
		return err
	case <-time.After(10 * time.Second):
		tm.t.Fatal("the session did not end")
		return nil
	}
}

func TestDoorTUICreatesUser(t *testing.T) {
	e := newDoorEnv(t)
	c := e.mustDial("admin", doorPassword("admin-password"))
	tm := e.openTerm(c)
	tm.waitFor("Dashboard", "admin (admin)")

	tm.typ(":users\r")
	tm.waitFor("USERNAME", "Users (1)")
	if strings.Contains(tm.screen(), "<enter> details") {
		t.Fatal("the 80-column hint bar unexpectedly has room for <enter> details")
	}
	// The terminal grows: the TUI redraws at the new size (the wider hint bar fits more).
	tm.mark0()
	if err := tm.sess.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	tm.waitFor("<enter> details")
	tm.typ("c")
	tm.waitFor("Create user", "Username", "Password")
	tm.typ("alice")
	tm.waitFor("alice")
	tm.typ("\t")
	tm.typ("secret-password")
	tm.typ("\x13") // ctrl+s submits
	tm.waitFor("created user alice")

	// The user exists for every door: ask the REST API.
	lr, err := e.svc.Login(context.Background(), "127.0.0.1", "admin", "admin-password")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !e.restHasUser(lr.Token, "alice") {
		if time.Now().After(deadline) {
			t.Fatal("GET /v1/admin/users never listed alice")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.svc.Login(context.Background(), "127.0.0.1", "alice", "secret-password"); err != nil {
		t.Fatalf("alice cannot log in with the doorPassword typed in the TUI: %v", err)
	}

	tm.typ("q")
	if err := tm.wait(); err != nil {
		t.Fatalf("quitting the TUI: %v", err)
	}
}

func (e *doorEnv) restHasUser(jwt, name string) bool {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.rest.URL+"/v1/admin/users", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	res, err := e.rest.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		e.t.Fatalf("GET /v1/admin/users: %s", res.Status)
	}
	var body map[string][]app.UserView
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		e.t.Fatal(err)
	}
	for _, us := range body {
		for _, u := range us {
			if u.Username == name {
				return true
			}
		}
	}
	return false
}

func TestDoorTUIViewerIsReadOnly(t *testing.T) {
	e := newDoorEnv(t)
	e.user("vera", app.RoleViewer)
	c := e.mustDial("vera", doorPassword("password-vera"))
	if out, _, code := e.exec(c, "whoami"); code != 0 || !strings.Contains(out, "access:   read-only") {
		t.Fatalf("viewer whoami: %d %q", code, out)
	}
	if out, _, code := e.exec(c, "users"); code != 0 || !strings.Contains(out, "vera") {
		t.Fatalf("viewer users: %d %q", code, out)
	}
	tm := e.openTerm(c)
	tm.waitFor("Dashboard", "vera (viewer, read-only)")
	tm.typ(":users\r")
	tm.waitFor("USERNAME", "vera")
	if strings.Contains(tm.screen(), "<c> create") {
		t.Fatal("a viewer is offered the create key")
	}
	tm.typ("c")
	tm.waitFor("read-only")
	if strings.Contains(tm.screen(), "Create user") {
		t.Fatal("a viewer got the create form")
	}
	tm.typ("\x03") // ctrl+c
	if err := tm.wait(); err != nil {
		t.Fatal(err)
	}
}

// TestDoorTUIConnect: a user presses enter on their host; the TUI hands the terminal to
// Connect in the same session (input, output, size and window changes) and comes back when
// it returns; a Connect error is shown in the TUI.
func TestDoorTUIConnect(t *testing.T) {
	type call struct {
		p      app.Principal
		hostID string
		line   string
		resize ssh.Window
	}
	calls := make(chan call, 1)
	var fail atomic.Bool
	e := newDoorEnv(t, func(c *sshd.DoorConfig) {
		c.Connect = func(ctx context.Context, p app.Principal, hostID string, tm sshd.Terminal) (int, error) {
			if fail.Load() {
				return -1, &app.Error{Kind: app.KindUnavailable, Code: "x", Message: "your workspace could not be started: boom"}
			}
			if tm.Term != "xterm-256color" || tm.Width != 80 || tm.Height != 24 || tm.Resize == nil || tm.Done == nil {
				t.Errorf("Connect's terminal: %+v", tm)
			}
			_, _ = io.WriteString(tm.Out, "bridging to "+hostID+"\r\n")
			var line []byte
			b := make([]byte, 1)
			for {
				if _, err := tm.In.Read(b); err != nil {
					return -1, err
				}
				if b[0] == '\r' || b[0] == '\n' {
					break
				}
				line = append(line, b[0])
			}
			_, _ = io.WriteString(tm.Out, "resize?\r\n")
			var w ssh.Window
			select {
			case w = <-tm.Resize:
			case <-time.After(10 * time.Second):
			}
			calls <- call{p, hostID, string(line), w}
			_, _ = io.WriteString(tm.Out, "bye\r\n")
			return 0, nil
		}
	})
	alice := e.user("alice", app.RoleUser)
	h, err := e.svc.CreateHost(context.Background(), e.admin, app.CreateHostInput{UserID: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	c := e.mustDial("alice", doorPassword("password-alice"))
	tm := e.openTerm(c)
	tm.waitFor("Hosts (1)", h.Host.ShortID, "<enter> connect")
	tm.typ("\r")
	tm.waitFor("bridging to " + h.Host.ID)
	tm.typ("echo hello\r")
	tm.waitFor("resize?")
	if err := tm.sess.WindowChange(30, 100); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-calls:
		if got.hostID != h.Host.ID || got.p.Username != "alice" || got.p.Method != "ssh_password" || got.line != "echo hello" ||
			got.resize.Width != 100 || got.resize.Height != 30 {
			t.Fatalf("Connect got %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect was not called")
	}
	// Back in the TUI, at the size the terminal has now, with the keyboard.
	tm.waitFor("bye", "connection to "+h.Host.ShortID+" closed", "Hosts (1)")
	tm.typ(":keys\r")
	tm.waitFor("[keys]")
	tm.typ(":hosts\r")
	tm.waitFor("Hosts (1)")

	fail.Store(true)
	tm.typ("\r")
	tm.waitFor("cannot connect to " + h.Host.ShortID + ": your workspace could not be started: boom")
	tm.typ("q")
	if err := tm.wait(); err != nil {
		t.Fatal(err)
	}
}

// Without a Connect hook the door prints the host's access command.
func TestDoorTUIConnectPrintsAccessCommand(t *testing.T) {
	e := newDoorEnv(t)
	alice := e.user("alice", app.RoleUser)
	h, err := e.svc.CreateHost(context.Background(), e.admin, app.CreateHostInput{UserID: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	tm := e.openTerm(e.mustDial("alice", doorPassword("password-alice")))
	tm.waitFor(h.Host.ShortID)
	tm.typ("\r")
	tm.waitFor(h.Host.AccessCommand)
	if err := tm.wait(); err != nil {
		t.Fatal(err)
	}
}

// TestDoorOpenSSH runs the real OpenSSH client in command mode with a key registered
// through the service.
func TestDoorOpenSSH(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no ssh client installed")
	}
	e := newDoorEnv(t)
	alice := e.user("alice", app.RoleUser)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "door test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pk, _ := gossh.NewPublicKey(pub)
	if _, err := e.svc.AddSSHKey(context.Background(), e.admin, alice.ID,
		app.AddKeyInput{PublicKey: string(gossh.MarshalAuthorizedKey(pk))}); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	run := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		base := []string{"-F", "/dev/null", "-i", keyFile, "-p", port, "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
			"-o", "LogLevel=ERROR", "-T", "alice@" + host}
		cmd := exec.CommandContext(ctx, sshBin, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("ssh %v: %v: %s", args, err, out)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("whoami")
	if code != 0 || !strings.Contains(out, "username: alice") || !strings.Contains(out, "auth:     ssh_key") {
		t.Fatalf("ssh whoami: exit %d: %s", code, out)
	}
	out, code = run("hosts")
	if code != 0 || !strings.Contains(out, "HOST") {
		t.Fatalf("ssh hosts: exit %d: %s", code, out)
	}
	out, code = run("nonsense")
	if code != 2 || !strings.Contains(out, "unknown command") {
		t.Fatalf("ssh nonsense: exit %d: %s", code, out)
	}
}

// TestDoorShutdownEndsTUI: Shutdown ends running TUIs at once and refuses new connections.
func TestDoorShutdownEndsTUI(t *testing.T) {
	e := newDoorEnv(t)
	c := e.mustDial("admin", doorPassword("admin-password"))
	tm := e.openTerm(c)
	tm.waitFor("Dashboard")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.door.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
	if err := tm.wait(); err != nil && !errors.Is(err, io.EOF) {
		var missing *gossh.ExitMissingError
		if !errors.As(err, &missing) {
			t.Fatalf("TUI session after shutdown: %v", err)
		}
	}
	if c, err := e.dial("admin", doorPassword("admin-password")); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after Shutdown")
	}
}

// TestDoorTUIDisabledMidSession: an account disabled while its TUI runs is shown out at
// once, told why, without waiting for a key.
func TestDoorTUIDisabledMidSession(t *testing.T) {
	e := newDoorEnv(t)
	u := e.user("root2", app.RoleAdmin)
	tm := e.openTerm(e.mustDial("root2", doorPassword("password-root2")))
	tm.waitFor("Dashboard")
	disabled := app.UserDisabled
	if _, err := e.svc.PatchUser(context.Background(), e.admin, u.ID, app.PatchUserInput{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	tm.waitFor("session ended: " + app.EndUserDisabled)
	done := make(chan error, 1)
	go func() { done <- tm.wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("session of a disabled account ended with status 0")
		}
	case <-time.After(time.Second):
		t.Fatal("session of a disabled account still open 1 s later")
	}
}

// TestDoorLoginGrace: a connection that does not authenticate in time is closed; one that
// opened a session lives on past the grace.
func TestDoorLoginGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	e := newDoorEnv(t, func(c *sshd.DoorConfig) { c.LoginGrace = grace })
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, raw); err != nil { // the server's banner, then EOF
		t.Fatalf("silent connection: %v (not closed by the server)", err)
	}
	if d := time.Since(start); d < grace/2 || d > 5*time.Second {
		t.Fatalf("a silent connection was closed after %s, grace %s", d, grace)
	}

	start = time.Now()
	tm := e.openTerm(e.mustDial("admin", doorPassword("admin-password")))
	tm.waitFor("Dashboard")
	for views := []string{"users", "hosts", "tasks", "events"}; time.Since(start) < 3*grace; {
		v := views[0]
		views = append(views[1:], v)
		tm.typ(":" + v + "\r")
		tm.waitFor("[" + v + "]")
	}
	tm.typ("q")
	if err := tm.wait(); err != nil {
		t.Fatalf("a session past the login grace: %v", err)
	}
}
