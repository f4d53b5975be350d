package sshd

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Login guard defaults, like OpenSSH's LoginGraceTime and (per address) MaxStartups.
const (
	DefaultLoginGrace     = 30 * time.Second
	DefaultMaxUnauthPerIP = 20
)

// loginGuard is what both SSH doors put in front of authentication: a connection must
// authenticate within the grace time or it is closed; each address may hold only so many
// connections that have not authenticated yet; and a connection that offered only keys
// that are not the user's counts as one failed login when it finally gives up (an agent
// offering several keys before the right one is not an attacker).
type loginGuard struct {
	svc      *app.Service
	door     string // "gateway" or "tui", for the metrics of refusals
	grace    time.Duration
	idle     time.Duration // the server's idle timeout (0: none), which follows the grace
	maxPerIP int

	mu     sync.Mutex
	unauth map[string]int // address -> connections not authenticated yet
}

func newLoginGuard(svc *app.Service, door string, grace, idle time.Duration, maxPerIP int) *loginGuard {
	if grace <= 0 {
		grace = DefaultLoginGrace
	}
	if maxPerIP <= 0 {
		maxPerIP = DefaultMaxUnauthPerIP
	}
	return &loginGuard{svc: svc, door: door, grace: grace, idle: idle, maxPerIP: maxPerIP, unauth: map[string]int{}}
}

type guardKey struct{}

// wrap admits a new connection: nil (refused) when its address already holds maxPerIP
// unauthenticated connections.
func (g *loginGuard) wrap(ctx ssh.Context, c net.Conn) net.Conn {
	ip := remoteIP(c.RemoteAddr())
	g.mu.Lock()
	if g.unauth[ip] >= g.maxPerIP {
		g.mu.Unlock()
		g.svc.ConnectionRefused(g.door, "unauthenticated_per_ip")
		return nil
	}
	g.unauth[ip]++
	g.mu.Unlock()
	gc := &guardConn{Conn: c, g: g, ip: ip, until: time.Now().Add(g.grace)}
	_ = gc.SetDeadline(time.Time{})
	ctx.SetValue(guardKey{}, gc)
	return gc
}

// authLog follows the authentication attempts of a connection (x/crypto/ssh calls it for
// each final answer; a key that is only asked about and accepted is not an attempt).
func (g *loginGuard) authLog(ctx ssh.Context) func(gossh.ConnMetadata, string, error) {
	return func(meta gossh.ConnMetadata, method string, err error) {
		gc, _ := ctx.Value(guardKey{}).(*guardConn)
		if gc == nil {
			return
		}
		gc.mu.Lock()
		defer gc.mu.Unlock()
		gc.login = meta.User()
		switch {
		case err == nil:
			gc.authenticated()
		case method == "publickey":
			gc.keyMisses++
		case method == "password" || method == "keyboard-interactive":
			gc.passwordTried = true // counted by app as it happened
		}
	}
}

// guardConn is a connection under the login guard.
type guardConn struct {
	net.Conn
	g  *loginGuard
	ip string

	mu            sync.Mutex
	until         time.Time // end of the grace; zero once authenticated
	authed        bool
	login         string
	keyMisses     int
	passwordTried bool
	closeOnce     sync.Once
}

// SetDeadline caps the deadline at the end of the grace until the connection has
// authenticated (the ssh package resets deadlines on every read for its idle timeout).
func (c *guardConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	u := c.until
	c.mu.Unlock()
	if !u.IsZero() && (t.IsZero() || t.After(u)) {
		t = u
	}
	return c.Conn.SetDeadline(t)
}

// authenticated lifts the grace (the server's idle timeout applies from now on) and frees
// the address's slot (c.mu held).
func (c *guardConn) authenticated() {
	if c.authed {
		return
	}
	c.authed, c.until = true, time.Time{}
	var d time.Time
	if c.g.idle > 0 {
		d = time.Now().Add(c.g.idle)
	}
	_ = c.Conn.SetDeadline(d)
	c.g.release(c.ip)
}

func (g *loginGuard) release(ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unauth[ip]--; g.unauth[ip] <= 0 {
		delete(g.unauth, ip)
	}
}

// Close ends the connection; one that never authenticated after offering only keys that
// are not the user's is one failed login.
func (c *guardConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.mu.Lock()
		authed, misses, pw, login := c.authed, c.keyMisses, c.passwordTried, c.login
		c.mu.Unlock()
		if authed {
			return
		}
		c.g.release(c.ip)
		if misses > 0 && !pw {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.g.svc.SSHLoginFailed(ctx, c.ip, login)
		}
	})
	return err
}
