package sshd

import (
	"errors"
	"net"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// ---- authentication ----

func gwRemoteIP(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(addr.String()); err == nil {
		return host
	}
	return addr.String()
}

func gwSetPrincipal(ctx ssh.Context, p app.Principal, fp string) {
	perms := ctx.Permissions()
	if perms.Permissions == nil {
		perms.Permissions = &gossh.Permissions{}
	}
	if perms.Extensions == nil {
		perms.Extensions = map[string]string{}
	}
	perms.Extensions[gwExtUserID] = p.UserID
	perms.Extensions[gwExtUsername] = p.Username
	perms.Extensions[gwExtMethod] = p.Method
	perms.Extensions[gwExtCred] = p.Cred
	perms.Extensions[gwExtCredHost] = p.CredHost
	if fp != "" {
		perms.Extensions[gwExtKeyFP] = fp
	}
}

func (g *Gateway) passwordLogin(ctx ssh.Context, password string) bool {
	p, err := g.svc.SSHPasswordLogin(ctx, gwRemoteIP(ctx.RemoteAddr()), ctx.User(), password, true)
	if err != nil {
		g.log.Info("password login refused", "login", ctx.User(), "remote", gwRemoteIP(ctx.RemoteAddr()), "err", err)
		return false
	}
	gwSetPrincipal(ctx, p, "")
	return true
}

func (g *Gateway) passwordAuth(ctx ssh.Context, password string) bool {
	return g.passwordLogin(ctx, password)
}

func (g *Gateway) keyboardInteractiveAuth(ctx ssh.Context, challenge gossh.KeyboardInteractiveChallenge) bool {
	answers, err := challenge("", "", []string{"Password: "}, []bool{false})
	if err != nil || len(answers) != 1 {
		return false
	}
	return g.passwordLogin(ctx, answers[0])
}

func (g *Gateway) publicKeyAuth(ctx ssh.Context, key ssh.PublicKey) bool {
	p, err := g.svc.SSHKeyLogin(ctx, gwRemoteIP(ctx.RemoteAddr()), ctx.User(), key)
	if err != nil {
		return false
	}
	gwSetPrincipal(ctx, p, gossh.FingerprintSHA256(key))
	return true
}

// principal rebuilds the authenticated principal of a connection and re-checks it on every
// new channel: the key the session runs under must be the one authenticated, and app's one
// rule (LoginAllowed) must still let that sign-in act (account active, key not deleted,
// password unchanged).
func (g *Gateway) principal(ctx ssh.Context, key gossh.PublicKey) (app.Principal, error) {
	perms := ctx.Permissions()
	if perms == nil || perms.Permissions == nil || perms.Extensions[gwExtUserID] == "" {
		return app.Principal{}, errors.New("connection is not authenticated")
	}
	ext := perms.Extensions
	p := app.Principal{
		UserID: ext[gwExtUserID], Username: ext[gwExtUsername], Method: ext[gwExtMethod],
		SourceIP: gwRemoteIP(ctx.RemoteAddr()), KeyFP: ext[gwExtKeyFP],
		Cred: ext[gwExtCred], CredHost: ext[gwExtCredHost],
	}
	if p.Method == app.MethodSSHKey || ext[gwExtKeyFP] != "" {
		if key == nil || gossh.FingerprintSHA256(key) != ext[gwExtKeyFP] {
			return app.Principal{}, errors.New("session key does not match the authenticated key")
		}
	}
	return g.svc.LoginAllowed(ctx, p)
}

var gwKeyConnLease = &gwCtxKey{"conn-lease"}

// connLease registers the connection with app on its first channel (a connection with no
// channel can do nothing) and returns the lease's id, which the connection's sessions name.
// When the right the connection stands on ends, app closes it: every channel of it (a
// ControlMaster's included) ends, and no new one opens.
func (g *Gateway) connLease(ctx ssh.Context, p app.Principal) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := ctx.Value(gwKeyConnLease).(*app.SessionLease); ok {
		return l.Info().ID, nil
	}
	conn, _ := ctx.Value(ssh.ContextKeyConn).(gossh.Conn)
	l, err := g.svc.TrackSession(p, app.SessionSSHConn, "", "", "gateway", func(string) {
		if conn != nil {
			_ = conn.Close()
		}
	})
	if err != nil {
		return "", err
	}
	ctx.SetValue(gwKeyConnLease, l)
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	return l.Info().ID, nil
}

func gwSessionKey(ctx ssh.Context) gossh.PublicKey {
	if k, ok := ctx.Value(ssh.ContextKeyPublicKey).(gossh.PublicKey); ok {
		return k
	}
	return nil
}
