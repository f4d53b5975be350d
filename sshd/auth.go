package sshd

import (
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/wish"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// authenticator is the authentication both SSH doors share: the user's password (and, on
// the gateway, a host's SSH password), keyboard-interactive with one "Password: " prompt,
// and the user's public keys, each checked, throttled and audited by app. What app accepted
// is kept with the connection, and every session or channel asks app's one rule
// (LoginAllowed) whether that sign-in may still act.
type authenticator struct {
	svc     *app.Service
	log     *slog.Logger
	gateway bool // the gateway also accepts the chosen host's SSH password
}

// options are the wish options that install the authenticator on a server.
func (a *authenticator) options() []ssh.Option {
	return []ssh.Option{
		wish.WithPasswordAuth(a.password),
		wish.WithKeyboardInteractiveAuth(a.keyboardInteractive),
		wish.WithPublicKeyAuth(a.publicKey),
	}
}

type authStateKey struct{}

// authState is what the auth callbacks of one connection learnt: the principal of a
// password login, and one per key app accepted (a client may offer several; the session
// runs under the one that signed).
type authState struct {
	mu       sync.Mutex
	password *app.Principal
	keys     map[string]app.Principal // by SHA256 fingerprint
}

func authStateOf(ctx ssh.Context) *authState {
	ctx.Lock()
	defer ctx.Unlock()
	st, _ := ctx.Value(authStateKey{}).(*authState)
	if st == nil {
		st = &authState{keys: map[string]app.Principal{}}
		ctx.SetValue(authStateKey{}, st)
	}
	return st
}

func remoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

func (a *authenticator) password(ctx ssh.Context, password string) bool {
	p, err := a.svc.SSHPasswordLogin(ctx, remoteIP(ctx.RemoteAddr()), ctx.User(), password, a.gateway)
	if err != nil {
		a.log.Info("password login refused", "login", ctx.User(), "remote", remoteIP(ctx.RemoteAddr()), "err", err)
		return false
	}
	st := authStateOf(ctx)
	st.mu.Lock()
	st.password = &p
	st.mu.Unlock()
	return true
}

func (a *authenticator) keyboardInteractive(ctx ssh.Context, challenge gossh.KeyboardInteractiveChallenge) bool {
	answers, err := challenge("", "", []string{"Password: "}, []bool{false})
	if err != nil || len(answers) != 1 {
		return false
	}
	return a.password(ctx, answers[0])
}

// publicKey is asked about every key a client offers, signed or not.
func (a *authenticator) publicKey(ctx ssh.Context, key ssh.PublicKey) bool {
	p, err := a.svc.SSHKeyLogin(ctx, remoteIP(ctx.RemoteAddr()), ctx.User(), key)
	if err != nil {
		return false
	}
	st := authStateOf(ctx)
	st.mu.Lock()
	st.keys[gossh.FingerprintSHA256(key)] = p
	st.mu.Unlock()
	return true
}

var errDenied = errors.New("access denied")

// principal resolves the principal a session or channel runs under: the one of the key that
// signed (key), else the password login's; then app says whether that sign-in may still act
// (account active and not expired, key not deleted, password unchanged).
func (a *authenticator) principal(ctx ssh.Context, key gossh.PublicKey) (app.Principal, error) {
	st := authStateOf(ctx)
	st.mu.Lock()
	var p app.Principal
	ok := false
	if key != nil {
		p, ok = st.keys[gossh.FingerprintSHA256(key)]
	} else if st.password != nil {
		p, ok = *st.password, true
	}
	st.mu.Unlock()
	if !ok {
		return app.Principal{}, errDenied
	}
	p.SourceIP = remoteIP(ctx.RemoteAddr())
	return a.svc.LoginAllowed(ctx, p)
}
