package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// sessEnv is a service on the in-memory engine with alice (two keys, a password, a token and
// a host with an SSH password) and bob (a host), each with sessions opened through app.
type sessEnv struct {
	t      *testing.T
	svc    *app.Service
	rt     *testenv.Runtime
	admin  app.Principal
	alice  app.Principal // an admin principal's view: ids only
	bob    string
	aliceH string
	hostPW string
	keys   [2]ssh.PublicKey
	keyIDs [2]string
	token  app.CreatedToken
	leases map[string]*app.SessionLease
	ctx    context.Context
	ended  map[string]chan string
}

func newSessEnv(t *testing.T, limit int) *sessEnv {
	t.Helper()
	rt := &testenv.Runtime{}
	te := testenv.NewService(t, testenv.WithRuntime(rt), testenv.WithDeps(func(d *app.Deps) { d.Clock = nil }),
		testenv.WithConfig(func(c *app.Config) { c.ReconcileInterval, c.MaxSessionsPerUser = -1, limit }))
	ctx := te.Start()
	svc := te.Service
	adminID, err := svc.EnsureAdmin(ctx, "admin", "admin-password-1")
	if err != nil {
		t.Fatal(err)
	}
	e := &sessEnv{t: t, svc: svc, rt: rt, ctx: ctx, leases: map[string]*app.SessionLease{}, ended: map[string]chan string{}}
	e.admin = app.Principal{UserID: adminID, Username: "admin", Role: app.RoleAdmin, Method: app.MethodJWT}
	alice := e.user("alice")
	e.bob = e.user("bobby")
	e.alice = app.Principal{UserID: alice}
	for i := range e.keys {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[i], _ = ssh.NewPublicKey(pub)
		k, err := svc.AdminAddSSHKey(ctx, e.admin, alice, app.AddKeyInput{PublicKey: string(ssh.MarshalAuthorizedKey(e.keys[i])), Name: "key" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		e.keyIDs[i] = k.ID
	}
	e.aliceH = e.host(alice)
	e.host(e.bob)
	res, err := svc.HostAction(ctx, e.admin, e.aliceH, app.TaskHostRotateSSH, false)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(res.Task.ID)
	e.hostPW = res.SSHPassword
	pa, err := svc.SSHPasswordLogin(ctx, "127.0.0.1", "alice", "password-alice", false)
	if err != nil {
		t.Fatal(err)
	}
	name := "ci"
	e.token, err = svc.CreateToken(ctx, pa, app.TokenInput{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *sessEnv) user(name string) string {
	e.t.Helper()
	u, err := e.svc.CreateUser(e.ctx, e.admin, app.CreateUserInput{Username: name, Password: "password-" + name})
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

func (e *sessEnv) host(userID string) string {
	e.t.Helper()
	hc, err := e.svc.CreateHost(e.ctx, e.admin, app.CreateHostInput{UserID: userID})
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(hc.Task.ID)
	return hc.Host.ID
}

func (e *sessEnv) wait(taskID string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	task, err := e.svc.WaitTask(ctx, taskID)
	if err != nil || task.State != app.TaskSucceeded {
		e.t.Fatalf("task %s: %+v %v", taskID, task, err)
	}
}

// open opens a named session the way a door would; how says with which credential.
func (e *sessEnv) open(name, how string) {
	e.t.Helper()
	ctx := e.ctx
	var p app.Principal
	var err error
	switch how {
	case "key0", "key1":
		p, err = e.svc.SSHKeyLogin(ctx, "127.0.0.1", "alice", e.keys[how[3]-'0'])
	case "password":
		p, err = e.svc.SSHPasswordLogin(ctx, "127.0.0.1", "alice", "password-alice", true)
	case "hostpw":
		p, err = e.svc.SSHPasswordLogin(ctx, "127.0.0.1", "alice", e.hostPW, true)
	case "token":
		p, err = e.svc.Authenticate(ctx, "127.0.0.1", e.token.Token)
	case "bob":
		p, err = e.svc.SSHPasswordLogin(ctx, "127.0.0.1", "bobby", "password-bobby", true)
	default:
		e.t.Fatalf("unknown credential %q", how)
	}
	if err != nil {
		e.t.Fatalf("%s: sign-in with %s: %v", name, how, err)
	}
	ended := make(chan string, 1)
	e.ended[name] = ended
	if how == "token" { // a desktop websocket: registered by the REST door
		l, err := e.svc.TrackSession(p, app.SessionVNC, e.aliceH, "", "desktop", func(r string) { ended <- r })
		if err != nil {
			e.t.Fatal(err)
		}
		e.leases[name] = l
		return
	}
	sess, err := e.svc.OpenSession(ctx, p, app.SessionRequest{Login: p.Username, Kind: app.SessionExec, Command: "sleep 600",
		OnEnd: func(r string) { ended <- r }})
	if err != nil {
		e.t.Fatalf("%s: open: %v", name, err)
	}
	e.t.Cleanup(sess.Close)
	e.leases[name] = sess.Lease
}

func TestRightsEndSessions(t *testing.T) {
	all := []string{"key0", "key1", "password", "hostpw", "token", "bob"}
	cases := []struct {
		name   string
		act    func(e *sessEnv) error
		ended  []string
		reason string
	}{
		{"disable user", func(e *sessEnv) error {
			st := app.UserDisabled
			_, err := e.svc.PatchUser(e.ctx, e.admin, e.alice.UserID, app.PatchUserInput{Status: &st})
			return err
		}, []string{"key0", "key1", "password", "hostpw", "token"}, app.EndUserDisabled},
		{"expire user", func(e *sessEnv) error {
			past := time.Now().Add(-time.Minute)
			_, err := e.svc.SetExpiry(e.ctx, e.admin, e.alice.UserID, &past)
			return err
		}, []string{"key0", "key1", "password", "hostpw", "token"}, app.EndUserExpired},
		{"delete user", func(e *sessEnv) error {
			return e.svc.DeleteUser(e.ctx, e.admin, e.alice.UserID)
		}, []string{"key0", "key1", "password", "hostpw", "token"}, app.EndUserDeleted},
		{"delete key", func(e *sessEnv) error {
			return e.svc.AdminDeleteSSHKey(e.ctx, e.admin, e.alice.UserID, e.keyIDs[0])
		}, []string{"key0"}, app.EndKeyDeleted},
		{"revoke token", func(e *sessEnv) error {
			return e.svc.RevokeToken(e.ctx, e.admin, e.token.ID, true)
		}, []string{"token"}, app.EndTokenRevoked},
		{"rotate password", func(e *sessEnv) error {
			_, err := e.svc.RotatePassword(e.ctx, e.admin, e.alice.UserID)
			return err
		}, []string{"password", "token"}, app.EndPasswordChanged},
		{"rotate host password", func(e *sessEnv) error {
			res, err := e.svc.HostAction(e.ctx, e.admin, e.aliceH, app.TaskHostRotateSSH, false)
			if err == nil {
				e.wait(res.Task.ID)
			}
			return err
		}, []string{"hostpw"}, app.EndHostPassword},
		{"delete host", func(e *sessEnv) error {
			_, err := e.svc.HostAction(e.ctx, e.admin, e.aliceH, app.TaskHostDelete, false)
			return err
		}, []string{"key0", "key1", "password", "hostpw", "token"}, app.EndHostDeleted},
		{"kill", func(e *sessEnv) error {
			_, err := e.svc.KillUserSessions(e.ctx, e.admin, e.alice.UserID)
			return err
		}, []string{"key0", "key1", "password", "hostpw", "token"}, app.EndKilled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newSessEnv(t, 0)
			for _, n := range all {
				e.open(n, n)
			}
			if err := tc.act(e); err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, n := range tc.ended {
				want[n] = true
			}
			for _, n := range all {
				l := e.leases[n]
				select {
				case <-l.Done():
					if !want[n] {
						t.Errorf("%s: ended (%q), should still be open", n, l.Reason())
						continue
					}
					if got := <-e.ended[n]; got != tc.reason {
						t.Errorf("%s: told %q, want %q", n, got, tc.reason)
					}
				default:
					if want[n] {
						t.Errorf("%s: still open", n)
					}
				}
			}
			// The processes of the ended sessions were stopped (hung up), the others not.
			wantStopped := 0
			for _, n := range tc.ended {
				if n != "token" { // a desktop has no process
					wantStopped++
				}
			}
			stopped := 0
			for _, p := range e.rt.Processes() {
				if len(p.Signals()) > 0 {
					stopped++
					if running, _ := p.Running(context.Background()); running {
						t.Errorf("process %v still runs after %v", p.Opts.Cmd, p.Signals())
					}
				}
			}
			if stopped != wantStopped {
				t.Errorf("%d processes stopped, want %d", stopped, wantStopped)
			}
			// Each ended session is an audit event.
			page, err := e.svc.ListEvents(e.ctx, e.admin, app.EventQuery{Type: "session.end", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) != len(tc.ended) {
				t.Errorf("%d session.end events, want %d", len(page.Events), len(tc.ended))
			}
		})
	}
}

// A deleted key or a changed password cannot open a new channel on a connection that
// signed in with it: the one rule (LoginAllowed) sees the credential gone.
func TestLoginAllowedFollowsTheCredential(t *testing.T) {
	e := newSessEnv(t, 0)
	pk, err := e.svc.SSHKeyLogin(e.ctx, "127.0.0.1", "alice", e.keys[0])
	if err != nil {
		t.Fatal(err)
	}
	ppw, err := e.svc.SSHPasswordLogin(e.ctx, "127.0.0.1", "alice", "password-alice", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []app.Principal{pk, ppw} {
		if _, err := e.svc.LoginAllowed(e.ctx, p); err != nil {
			t.Fatalf("%s: %v", p.Method, err)
		}
	}
	if err := e.svc.AdminDeleteSSHKey(e.ctx, e.admin, e.alice.UserID, e.keyIDs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.LoginAllowed(e.ctx, pk); err == nil {
		t.Error("a deleted key still allowed")
	}
	if _, err := e.svc.LoginAllowed(e.ctx, ppw); err != nil {
		t.Errorf("password sign-in refused after a key deletion: %v", err)
	}
	if _, err := e.svc.RotatePassword(e.ctx, e.admin, e.alice.UserID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.LoginAllowed(e.ctx, ppw); err == nil {
		t.Error("a changed password still allowed")
	}
	// Its tokens went with the password, for good: enabling again does not bring them back.
	if _, err := e.svc.Authenticate(e.ctx, "127.0.0.1", e.token.Token); err == nil {
		t.Error("token survived a password rotation")
	}
}

func TestDisableRevokesTokensForGood(t *testing.T) {
	e := newSessEnv(t, 0)
	for _, st := range []app.UserStatus{app.UserDisabled, app.UserActive} {
		st := st
		if _, err := e.svc.PatchUser(e.ctx, e.admin, e.alice.UserID, app.PatchUserInput{Status: &st}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Authenticate(e.ctx, "127.0.0.1", e.token.Token); err == nil {
		t.Error("token works again after disable and enable")
	}
}

func TestSessionLimit(t *testing.T) {
	e := newSessEnv(t, 2)
	e.open("a", "key0")
	e.open("b", "password")
	p, err := e.svc.SSHKeyLogin(e.ctx, "127.0.0.1", "alice", e.keys[1])
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.OpenSession(e.ctx, p, app.SessionRequest{Login: "alice", Kind: app.SessionShell})
	var ae *app.Error
	if !errors.As(err, &ae) || ae.Code != app.CodeTooManySessions || !strings.Contains(ae.Message, "SSH_MAX_SESSIONS_PER_USER=2") {
		t.Fatalf("third session: %v", err)
	}
	// Desktops, TUI screens and connections do not count; another user is not limited by alice.
	for _, k := range []app.SessionKind{app.SessionVNC, app.SessionTUI, app.SessionSSHConn} {
		l, err := e.svc.TrackSession(p, k, "", "", "", nil)
		if err != nil {
			t.Fatalf("%s refused: %v", k, err)
		}
		l.Close()
	}
	e.open("c", "bob")
	e.leases["a"].Close()
	e.open("d", "key1")
}

// SIGTERM: every open session is told the server is going down and ended.
func TestEndAllSessions(t *testing.T) {
	e := newSessEnv(t, 0)
	for _, n := range []string{"key0", "token", "bob"} {
		e.open(n, n)
	}
	if n := e.svc.EndAllSessions(e.ctx); n != 3 {
		t.Fatalf("ended %d sessions, want 3", n)
	}
	for n, ch := range e.ended {
		select {
		case got := <-ch:
			if got != app.EndShutdown {
				t.Errorf("%s told %q", n, got)
			}
		default:
			t.Errorf("%s not told", n)
		}
	}
}

// An account that expires by the clock loses its open sessions on the second, not at the
// next periodic scan.
func TestExpiryEndsSessionsOnTheSecond(t *testing.T) {
	rt := &testenv.Runtime{}
	te := testenv.NewService(t, testenv.WithRuntime(rt), testenv.WithDeps(func(d *app.Deps) { d.Clock = nil }),
		testenv.WithConfig(func(c *app.Config) { c.ReconcileInterval = time.Hour }))
	ctx := te.Start()
	svc := te.Service
	admin := app.Principal{Username: "system", Role: app.RoleAdmin, Method: app.MethodSystem}
	u, err := svc.CreateUser(ctx, admin, app.CreateUserInput{Username: "temp", Password: "password-temp"})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := svc.CreateHost(ctx, admin, app.CreateHostInput{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if task, err := svc.WaitTask(wctx, hc.Task.ID); err != nil || task.State != app.TaskSucceeded {
		t.Fatalf("host: %+v %v", task, err)
	}
	p, err := svc.SSHPasswordLogin(ctx, "127.0.0.1", "temp", "password-temp", true)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan string, 1)
	sess, err := svc.OpenSession(ctx, p, app.SessionRequest{Login: "temp", Kind: app.SessionShell, OnEnd: func(r string) { ended <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	at := time.Now().Add(1500 * time.Millisecond)
	if _, err := svc.SetExpiry(ctx, admin, u.ID, &at); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ended:
		if r != app.EndUserExpired {
			t.Fatalf("told %q", r)
		}
		if late := time.Since(at); late < 0 || late > time.Second {
			t.Fatalf("ended %v after the expiry", late)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived the account's expiry")
	}
}

// A session ends when the access token or login JWT it was opened with expires.
func TestSessionEndsWithItsCredentialsExpiry(t *testing.T) {
	e := newSessEnv(t, 0)
	for _, m := range []app.AuthMethod{app.MethodToken, app.MethodJWT} {
		p := app.Principal{UserID: e.alice.UserID, Username: "alice", Role: app.RoleUser, Method: m,
			TokenExpiresAt: time.Now().Add(200 * time.Millisecond), JWTExpiry: time.Now().Add(200 * time.Millisecond)}
		l, err := e.svc.TrackSession(p, app.SessionVNC, e.aliceH, "", "desktop", nil)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.Done():
			if l.Reason() != app.EndCredentialExpired {
				t.Errorf("%s: ended with %q", m, l.Reason())
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: the session outlived its credential", m)
		}
	}
	// Without an expiry it stays open.
	l, err := e.svc.TrackSession(app.Principal{UserID: e.alice.UserID, Method: app.MethodSSHKey}, app.SessionShell, e.aliceH, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	select {
	case <-l.Done():
		t.Fatal("a key session ended by itself")
	case <-time.After(300 * time.Millisecond):
	}
}
