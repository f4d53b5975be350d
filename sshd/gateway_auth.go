package sshd

import (
	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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
