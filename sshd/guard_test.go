package sshd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
)

// guardEnv is a gateway over a service without an engine: enough for authentication.
func guardEnv(t *testing.T, cfg sshd.GatewayConfig) (*app.Service, string) {
	t.Helper()
	te := testenv.NewService(t, testenv.WithRuntime(app.NoRuntime{}),
		testenv.WithDeps(func(d *app.Deps) { d.Clock = nil }),
		testenv.WithConfig(func(c *app.Config) { c.ReconcileInterval = -1 }))
	hostKey, _, _ := gwKey(t)
	cfg.HostSigner, cfg.Logger = hostKey, testenv.DiscardLogger()
	gw, err := sshd.NewGateway(te.Service, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() { _ = gw.Close() })
	return te.Service, ln.Addr().String()
}

// An agent that offers several keys before the right one is not an attacker: eight such
// logins in a row from one address all succeed, and nothing is recorded as a failure.
func TestGuardOfferedKeysAreNotFailures(t *testing.T) {
	svc, addr := guardEnv(t, sshd.GatewayConfig{})
	ctx := context.Background()
	admin := app.Principal{Username: "system", Role: app.RoleAdmin, Method: app.MethodSystem}
	u, err := svc.CreateUser(ctx, admin, app.CreateUserInput{Username: "alice", Password: "password-alice"})
	if err != nil {
		t.Fatal(err)
	}
	right, pub, _ := gwKey(t)
	if _, err := svc.AdminAddSSHKey(ctx, admin, u.ID, app.AddKeyInput{PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	var wrong []gossh.Signer
	for i := 0; i < 4; i++ {
		s, _, _ := gwKey(t)
		wrong = append(wrong, s)
	}
	for i := 0; i < 8; i++ {
		c, _, err := gwDial(addr, "127.0.0.21", "alice", gossh.PublicKeys(append(wrong, right)...))
		if err != nil {
			t.Fatalf("login %d with the right key offered last: %v", i+1, err)
		}
		c.Close()
	}
	page, err := svc.ListEvents(ctx, admin, app.EventQuery{Type: "auth.ssh_login", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Events {
		if e.Result != app.ResultSuccess {
			t.Errorf("event %s %s: %s", e.Action, e.Result, e.Message)
		}
	}
}

// One user's typos lock out that user from that address, never the admin behind the same
// address; throttled attempts are one event per window, not one each.
func TestGuardThrottleIsPerUserAndAddress(t *testing.T) {
	svc, addr := guardEnv(t, sshd.GatewayConfig{})
	ctx := context.Background()
	admin := app.Principal{Username: "system", Role: app.RoleAdmin, Method: app.MethodSystem}
	for _, n := range []string{"bobby", "carol"} {
		if _, err := svc.CreateUser(ctx, admin, app.CreateUserInput{Username: n, Password: "password-" + n}); err != nil {
			t.Fatal(err)
		}
	}
	const ip = "127.0.0.22"
	for i := 0; i < 30; i++ {
		if c, _, err := gwDial(addr, ip, "bobby", gossh.Password("typo")); err == nil {
			c.Close()
			t.Fatal("a wrong password signed in")
		}
	}
	// bobby is throttled from that address, even with the right password...
	if _, err := svc.SSHPasswordLogin(ctx, ip, "bobby", "password-bobby", true); app.AsError(err).Code != "too_many_attempts" {
		t.Fatalf("bobby after 30 typos: %v", err)
	}
	// ...carol, behind the same address, is not.
	c, _, err := gwDial(addr, ip, "carol", gossh.Password("password-carol"))
	if err != nil {
		t.Fatalf("carol locked out by bobby's typos: %v", err)
	}
	c.Close()
	page, err := svc.ListEvents(ctx, admin, app.EventQuery{Type: "auth.ssh_login", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	throttled := 0
	for _, e := range page.Events {
		if e.Result == app.ResultDenied {
			throttled++
		}
	}
	if throttled < 1 || throttled > 4 {
		t.Errorf("%d throttle events for 25 throttled attempts; want one per back-off window", throttled)
	}
}

// 200 idle connections that never authenticate are all closed after SSH_LOGIN_GRACE, and an
// address holding its cap of unauthenticated connections gets no more.
func TestGuardLoginGraceAndUnauthCap(t *testing.T) {
	const grace = 700 * time.Millisecond
	_, addr := guardEnv(t, sshd.GatewayConfig{LoginGrace: grace, MaxUnauthPerIP: 20})
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.1.%d", 1+i/20))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	start := time.Now()
	// One more from a full address is closed at once (or never gets the server's banner).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.1.1")}}
	extra, err := d.Dial("tcp", addr)
	if err == nil {
		_ = extra.SetReadDeadline(time.Now().Add(grace / 2))
		n, rerr := io.Copy(io.Discard, extra)
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() {
			t.Errorf("a 21st unauthenticated connection from one address was kept open (%d bytes read)", n)
		}
		extra.Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(grace + 10*time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				errs <- err
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("an idle unauthenticated connection was not closed by the server: %v", err)
	}
	if took := time.Since(start); took < grace/2 || took > grace+5*time.Second {
		t.Errorf("closed after %v, grace %v", took, grace)
	}
}
