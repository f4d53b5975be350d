package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/wish"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
)

// GatewayConfig configures the SSH gateway.
type GatewayConfig struct {
	// HostSigner is the server's host key (required), from LoadOrCreateHostKey so it is the
	// same key across restarts and shared with the TUI door.
	HostSigner gossh.Signer
	// IdleTimeout closes a connection after this long without any traffic. Zero: 30m.
	IdleTimeout time.Duration
	// MaxSessionsPerUser caps a user's concurrent sessions (shell, exec, sftp) over all
	// their connections; more are refused with a message. Zero: 10. Port forwards do not
	// count.
	MaxSessionsPerUser int
	// Logger receives connection and session logs. Nil: slog.Default().
	Logger *slog.Logger
	// Ciphers the gateway offers, in x/crypto/ssh names. Nil: DefaultGatewayCiphers
	// (AES-GCM only, the fastest; see there for the clients this leaves out).
	Ciphers []string
}

// Gateway defaults.
const (
	DefaultGatewayIdleTimeout = 30 * time.Minute
	DefaultGatewayMaxSessions = 10
)

// Inside the workspace container.
const (
	gwSFTPServer   = "/usr/lib/openssh/sftp-server"
	gwWorkspaceEnv = "workspace" // USER/LOGNAME of uid 1000 in the managed images
)

// ErrGatewayClosed is returned by Serve after Shutdown or Close.
var ErrGatewayClosed = ssh.ErrServerClosed

// gwAttacher is what the gateway needs from the engine besides app.Runtime: interactive
// exec sessions. *runtime.Docker implements it.
type gwAttacher interface {
	Attach(ctx context.Context, hostID string, opts runtime.AttachOptions) (*runtime.ExecSession, error)
}

// Gateway is the SSH gateway: `ssh USER[+SHORTID]@host -p SSH_PROXY_PORT` lands in a login
// shell (or runs a command, or an SFTP server) as the workspace user (uid 1000, never
// root) inside the user's own container, bridged through the engine's exec API.
// Authentication, authorization, throttling and audit are app.Service's.
//
// Supported: password (the user's, or the host's SSH password), keyboard-interactive (one
// "Password: " prompt) and public-key authentication; shell (`bash -l`), exec (`bash -lc
// CMD`, stdout/stderr apart, exit status returned) and subsystem sftp (OpenSSH >= 9 scp
// uses it; legacy `scp -O` runs the image's scp through exec), with or without a pty
// (TERM, size and window changes; pty modes are not applied); environment TERM, LANG and
// LC_* only; signals (delivered to the process group by exec'ing kill in the container,
// which needs the gateway on the engine host, see runtime.ExecSession.Signal; a process
// killed by a signal reports exit status 128+n, not exit-signal); local forwarding (-L)
// to 127.0.0.1, ::1 or localhost inside the container (dialled in its network namespace:
// needs root on the engine host). A stopped host is started on login, with progress on
// stderr.
//
// Refused: remote forwarding (-R), agent forwarding, X11, any other channel type or
// subsystem, other users' hosts ("no such host"). When a client goes away, its process
// gets SIGHUP (the engine itself keeps exec processes running).
//
// Ciphers: AES-GCM only unless GatewayConfig.Ciphers says otherwise (DefaultGatewayCiphers
// says why). Shell bridges a shell the same way for the TUI door's "enter on a host".
type Gateway struct {
	svc    *app.Service
	rt     gwAttacher
	cfg    GatewayConfig
	log    *slog.Logger
	srv    *ssh.Server
	dialNS func(ctx context.Context, pid int, network, addr string) (net.Conn, error)

	mu       sync.Mutex
	sessions map[string]int // user id -> open sessions

	hangups chan struct{} // bounds concurrent hang-ups
}

// Extensions of the connection's permissions, set by the auth handlers. x/crypto/ssh keeps
// the permissions returned for the key that signed, so these describe that key.
const (
	gwExtUserID   = "ccp-user-id"
	gwExtUsername = "ccp-username"
	gwExtMethod   = "ccp-method"
	gwExtKeyFP    = "ccp-key-fp"
)

// NewGateway builds the gateway on svc, whose runtime must be able to attach (the Docker
// runtime). Serve it on a listener.
func NewGateway(svc *app.Service, cfg GatewayConfig) (*Gateway, error) {
	if svc == nil {
		return nil, errors.New("sshd: gateway needs a service")
	}
	if cfg.HostSigner == nil {
		return nil, errors.New("sshd: gateway needs a host key")
	}
	rt, ok := svc.Runtime().(gwAttacher)
	if !ok {
		return nil, fmt.Errorf("sshd: gateway needs a runtime that can attach to containers (the Docker runtime), not %T", svc.Runtime())
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultGatewayIdleTimeout
	}
	if cfg.MaxSessionsPerUser <= 0 {
		cfg.MaxSessionsPerUser = DefaultGatewayMaxSessions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Ciphers) == 0 {
		cfg.Ciphers = DefaultGatewayCiphers
	}
	g := &Gateway{
		svc: svc, rt: rt, cfg: cfg, log: cfg.Logger.With("component", "ssh-gateway"),
		dialNS:   runtime.DialInNetns,
		sessions: map[string]int{},
		hangups:  make(chan struct{}, 8),
	}
	srv, err := wish.NewServer(
		wish.WithVersion("cloud-cli-proxy"),
		func(s *ssh.Server) error { s.AddHostKey(cfg.HostSigner); return nil },
		wish.WithIdleTimeout(cfg.IdleTimeout),
		wish.WithPasswordAuth(g.passwordAuth),
		wish.WithKeyboardInteractiveAuth(g.keyboardInteractiveAuth),
		wish.WithPublicKeyAuth(g.publicKeyAuth),
		// Middleware runs last to first: recover, log, authorize, limit, host, bridge.
		wish.WithMiddleware(
			g.bridgeMiddleware,
			g.hostMiddleware,
			g.limitMiddleware,
			g.authorizeMiddleware,
			g.logMiddleware,
			g.recoverMiddleware,
		),
		func(s *ssh.Server) error {
			// Subsystems bypass Handler in the ssh package: route sftp through the same chain.
			s.SubsystemHandlers = map[string]ssh.SubsystemHandler{"sftp": ssh.SubsystemHandler(s.Handler)}
			s.ChannelHandlers = map[string]ssh.ChannelHandler{
				"session":      g.sessionChannel,
				"direct-tcpip": g.directTCPIP,
			}
			// No RequestHandlers: tcpip-forward (-R) and every other global request is refused.
			s.RequestHandlers = map[string]ssh.RequestHandler{}
			// A real terminal lives in the container: record the request, never emulate.
			s.PtyHandler = g.ptyHandler
			s.ServerConfigCallback = func(ssh.Context) *gossh.ServerConfig {
				return &gossh.ServerConfig{Config: gossh.Config{Ciphers: cfg.Ciphers}}
			}
			s.ConnCallback = func(_ ssh.Context, c net.Conn) net.Conn { return newGwConn(c) }
			s.ConnectionFailedCallback = func(conn net.Conn, err error) {
				if !errors.Is(err, io.EOF) {
					g.log.Debug("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
				}
			}
			return nil
		},
	)
	if err != nil {
		return nil, err
	}
	g.srv = srv
	return g, nil
}

// Serve accepts SSH connections on ln until Shutdown or Close; it then returns
// ErrGatewayClosed.
func (g *Gateway) Serve(ln net.Listener) error { return g.srv.Serve(ln) }

// Shutdown stops accepting connections and waits for open ones to end until ctx ends;
// then it closes them (their container processes get SIGHUP) and returns ctx's error.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if ctx.Err() != nil {
		_ = g.srv.Close()
	}
	return err
}

// Close closes the listeners and every connection at once.
func (g *Gateway) Close() error { return g.srv.Close() }

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

// principal rebuilds the authenticated principal of a connection and re-checks it: the key
// the session runs under must be the one authenticated, and the account must still be
// allowed to log in (not disabled or expired since).
func (g *Gateway) principal(ctx ssh.Context, key gossh.PublicKey) (app.Principal, error) {
	perms := ctx.Permissions()
	if perms == nil || perms.Permissions == nil || perms.Extensions[gwExtUserID] == "" {
		return app.Principal{}, errors.New("connection is not authenticated")
	}
	ext := perms.Extensions
	p := app.Principal{
		UserID: ext[gwExtUserID], Username: ext[gwExtUsername], Method: ext[gwExtMethod],
		SourceIP: gwRemoteIP(ctx.RemoteAddr()),
	}
	if p.Method == "ssh_key" || ext[gwExtKeyFP] != "" {
		if key == nil || gossh.FingerprintSHA256(key) != ext[gwExtKeyFP] {
			return app.Principal{}, errors.New("session key does not match the authenticated key")
		}
	}
	return g.svc.SSHRecheck(ctx, p)
}

func gwSessionKey(ctx ssh.Context) gossh.PublicKey {
	if k, ok := ctx.Value(ssh.ContextKeyPublicKey).(gossh.PublicKey); ok {
		return k
	}
	return nil
}

// ---- session channels ----

// sessionChannel is the ssh package's session handler with requests filtered: agent
// forwarding and X11 are refused outright (the ssh package would otherwise accept an
// agent request it cannot serve).
func (g *Gateway) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	ssh.DefaultSessionHandler(srv, conn, gwFilteredChannel{newChan}, ctx)
}

type gwFilteredChannel struct{ gossh.NewChannel }

func (c gwFilteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := c.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	st := &gwChanState{closed: make(chan struct{})}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		defer close(st.closed)
		for r := range reqs {
			switch r.Type {
			case "auth-agent-req@openssh.com", "x11-req":
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
				continue
			case "window-change":
				// Served here rather than by the ssh package, whose unbuffered hand-off would
				// need a goroutine per session to drain it.
				ok := st.windowChange(r.Payload)
				if r.WantReply {
					_ = r.Reply(ok, nil)
				}
				continue
			}
			out <- r
		}
	}()
	return &gwChannel{Channel: ch, st: st}, out, nil
}

// gwChanState is the gateway's per-session-channel state.
type gwChanState struct {
	closed chan struct{} // closed when the channel closes (its request stream ends)
	mu     sync.Mutex
	pty    *gwPty // the pty request, if any
}

// gwChannel wraps a session channel so the handler can find the channel's state: the ssh
// package's session passes Stderr through (the gateway never emulates a pty), so
// Session.Stderr() is a *gwStderr carrying it.
type gwChannel struct {
	gossh.Channel
	st *gwChanState
}

func (c *gwChannel) Stderr() io.ReadWriter {
	return &gwStderr{ReadWriter: c.Channel.Stderr(), st: c.st}
}

type gwStderr struct {
	io.ReadWriter
	st *gwChanState
}

// gwState returns the state of a session's channel (never nil).
func gwState(s ssh.Session) *gwChanState {
	if se, ok := s.Stderr().(*gwStderr); ok {
		return se.st
	}
	return &gwChanState{} // not reached: every session channel is a gwChannel
}

// gwPty is a session's terminal request, its latest size, and (once attached) the
// process whose terminal follows window changes.
type gwPty struct {
	term string
	mu   sync.Mutex
	win  ssh.Window
	es   *runtime.ExecSession
	sent ssh.Window // the size last given to es
}

func (p *gwPty) size() (w, h uint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return uint(max(p.win.Width, 0)), uint(max(p.win.Height, 0))
}

// attach makes window changes resize es from now on; w, h is the size es started with.
func (p *gwPty) attach(es *runtime.ExecSession, w, h uint) {
	p.mu.Lock()
	p.es, p.sent = es, ssh.Window{Width: int(w), Height: int(h)}
	p.mu.Unlock()
	p.resize()
}

// resize gives the attached process the latest size if it differs from the last one sent.
func (p *gwPty) resize() {
	p.mu.Lock()
	es, win := p.es, p.win
	if es == nil || (win.Width == p.sent.Width && win.Height == p.sent.Height) {
		p.mu.Unlock()
		return
	}
	p.sent = win
	p.mu.Unlock()
	_ = es.Resize(uint(max(win.Width, 0)), uint(max(win.Height, 0)))
}

// ptyHandler records a pty-req without emulating a terminal: the container's exec TTY is
// the terminal. Window changes are served by the channel's request filter.
func (g *Gateway) ptyHandler(_ ssh.Context, s ssh.Session, req ssh.Pty) (func() error, error) {
	st := gwState(s)
	st.mu.Lock()
	st.pty = &gwPty{term: req.Term, win: req.Window}
	st.mu.Unlock()
	return func() error { return nil }, nil
}

// windowChange applies a window-change request (RFC 4254 6.7) to the session's pty.
func (st *gwChanState) windowChange(payload []byte) bool {
	var m struct{ Cols, Rows, WidthPx, HeightPx uint32 }
	if err := gossh.Unmarshal(payload, &m); err != nil || m.Cols == 0 || m.Rows == 0 || m.Cols > 10000 || m.Rows > 10000 {
		return false
	}
	st.mu.Lock()
	p := st.pty
	st.mu.Unlock()
	if p == nil {
		return false
	}
	p.setWindow(ssh.Window{Width: int(m.Cols), Height: int(m.Rows), WidthPixels: int(m.WidthPx), HeightPixels: int(m.HeightPx)})
	return true
}

// setWindow records a new size and gives it to the attached process.
func (p *gwPty) setWindow(w ssh.Window) {
	if w.Width <= 0 || w.Height <= 0 || w.Width > 10000 || w.Height > 10000 {
		return
	}
	p.mu.Lock()
	p.win = w
	p.mu.Unlock()
	p.resize()
}

func (g *Gateway) ptyOf(s ssh.Session) *gwPty {
	st := gwState(s)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pty
}

// ---- middleware ----

type gwCtxKey struct{ name string }

var (
	gwKeyPrincipal = &gwCtxKey{"principal"}
	gwKeyHost      = &gwCtxKey{"host"}
)

// fail prints a plain message on the session's stderr and ends it with status 1.
func (g *Gateway) fail(s ssh.Session, msg string) {
	_, _ = io.WriteString(s.Stderr(), strings.TrimRight(msg, "\n")+g.newline(s))
	_ = s.Exit(1)
}

// newline is the line end for text the gateway itself prints: a client with a pty has
// its terminal in raw mode.
func (g *Gateway) newline(s ssh.Session) string {
	if g.ptyOf(s) != nil {
		return "\r\n"
	}
	return "\n"
}

func (g *Gateway) recoverMiddleware(next ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		defer func() {
			if r := recover(); r != nil {
				g.log.Error("panic in gateway session", "panic", r, "stack", string(debug.Stack()))
				g.fail(s, "internal error")
			}
		}()
		next(s)
	}
}

func (g *Gateway) logMiddleware(next ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		start := time.Now()
		kind := "shell"
		switch {
		case s.Subsystem() != "":
			kind = "subsystem " + s.Subsystem()
		case s.RawCommand() != "":
			kind = "exec"
		}
		g.log.Debug("session start", "login", s.User(), "remote", gwRemoteIP(s.RemoteAddr()), "kind", kind)
		next(s)
		g.log.Debug("session end", "login", s.User(), "kind", kind, "duration", time.Since(start).String())
	}
}

func (g *Gateway) authorizeMiddleware(next ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		p, err := g.principal(s.Context(), s.PublicKey())
		if err != nil {
			g.log.Info("session refused", "login", s.User(), "remote", gwRemoteIP(s.RemoteAddr()), "err", err)
			g.fail(s, "access denied")
			return
		}
		s.Context().SetValue(gwKeyPrincipal, p)
		next(s)
	}
}

func (g *Gateway) limitMiddleware(next ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		p := s.Context().Value(gwKeyPrincipal).(app.Principal)
		if !g.acquire(p.UserID) {
			g.fail(s, g.tooMany())
			return
		}
		defer g.release(p.UserID)
		next(s)
	}
}

// acquire counts a session of the user against MaxSessionsPerUser; false when the user is
// at the limit. Every true is paired with a release.
func (g *Gateway) acquire(userID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sessions[userID] >= g.cfg.MaxSessionsPerUser {
		return false
	}
	g.sessions[userID]++
	return true
}

func (g *Gateway) release(userID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sessions[userID]--; g.sessions[userID] <= 0 {
		delete(g.sessions, userID)
	}
}

func (g *Gateway) tooMany() string {
	return fmt.Sprintf("too many open sessions (limit %d); close one and try again", g.cfg.MaxSessionsPerUser)
}

// gwPlain is the user-facing text of an error from app: its message, never internals.
func gwPlain(err error) string {
	var ae *app.Error
	if errors.As(err, &ae) && ae.Message != "" {
		return ae.Message
	}
	var re *app.RuntimeError
	if errors.As(err, &re) {
		return "your workspace is not available right now; try again later"
	}
	return "your workspace is not available right now"
}

func (g *Gateway) hostMiddleware(next ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		ctx := s.Context()
		p := ctx.Value(gwKeyPrincipal).(app.Principal)
		h, err := g.svc.GatewayHost(ctx, p, s.User())
		if err != nil {
			var ae *app.Error
			if errors.As(err, &ae) && ae.Code == "no_host" {
				g.fail(s, ae.Message)
				return
			}
			g.fail(s, "no such host")
			return
		}
		nl := g.newline(s)
		say := func(line string) { _, _ = io.WriteString(s.Stderr(), line+nl) }
		if err := g.svc.EnsureHostRunning(ctx, p, h.ID, say); err != nil {
			g.log.Info("host not ready for session", "host", h.ID, "err", err)
			g.fail(s, gwPlain(err))
			return
		}
		ctx.SetValue(gwKeyHost, h)
		next(s)
	}
}

var gwLCName = regexp.MustCompile(`^LC_[A-Z_]{1,32}$`)

// gwEnv keeps the client's environment variables that are allowed through: TERM, LANG
// and LC_*, with sane values.
func gwEnv(environ []string) []string {
	var out []string
	seen := map[string]int{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(v) > 256 || strings.ContainsAny(v, "\x00\n\r") {
			continue
		}
		if k != "TERM" && k != "LANG" && !gwLCName.MatchString(k) {
			continue
		}
		if i, dup := seen[k]; dup {
			out[i] = kv // the last one wins
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// bridgeMiddleware is the end of the chain: it runs the session's process in the container.
func (g *Gateway) bridgeMiddleware(_ ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		ctx := s.Context()
		p := ctx.Value(gwKeyPrincipal).(app.Principal)
		h := ctx.Value(gwKeyHost).(app.Host)
		pty := g.ptyOf(s)

		var cmd []string
		action, detail := "gateway.shell", "login shell"
		switch {
		case s.Subsystem() == "sftp":
			cmd = []string{gwSFTPServer}
			action, detail, pty = "gateway.sftp", "sftp", nil
		case s.Subsystem() != "":
			g.fail(s, "subsystem "+s.Subsystem()+" is not supported")
			return
		case s.RawCommand() != "":
			cmd = []string{"bash", "-lc", s.RawCommand()}
			action, detail = "gateway.exec", s.RawCommand()
		default:
			cmd = []string{"bash", "-l"}
		}
		sigs := make(chan ssh.Signal, 4)
		s.Signals(sigs)
		defer s.Signals(nil)
		code, err := g.bridge(ctx, p, h.ID, gwAttachOptions(cmd, s.Environ(), pty), action, detail, gwStreams{
			stdin: s, stdout: s, stderr: s.Stderr(), pty: pty, closed: gwState(s).closed, sigs: sigs,
		})
		switch {
		case err != nil:
			g.fail(s, err.Error())
		case code >= 0:
			_ = s.Exit(code)
		}
	}
}

// gwAttachOptions is how the gateway runs cmd in a container: as the workspace user in
// its home, with the client's allowed environment, and on a terminal when pty is set
// (whose TERM wins over an env request).
func gwAttachOptions(cmd, environ []string, pty *gwPty) runtime.AttachOptions {
	env := gwEnv(environ)
	env = append(env, "USER="+gwWorkspaceEnv, "LOGNAME="+gwWorkspaceEnv, "SHELL=/bin/bash")
	opts := runtime.AttachOptions{Cmd: cmd, Env: env, WorkingDir: runtime.HomeDir}
	if pty != nil {
		opts.TTY = true
		opts.Width, opts.Height = pty.size()
		term := pty.term
		if term == "" {
			term = "xterm"
		}
		kept := opts.Env[:0]
		for _, kv := range opts.Env {
			if !strings.HasPrefix(kv, "TERM=") {
				kept = append(kept, kv)
			}
		}
		opts.Env = append(kept, "TERM="+term)
	}
	return opts
}

// gwStreams connects a process in the container to its client.
type gwStreams struct {
	stdin          io.Reader
	stdout, stderr io.Writer         // stderr is unused with a pty (the terminal merges them)
	pty            *gwPty            // the terminal, nil without one
	closed         <-chan struct{}   // closed when the client ends the session; nil: never
	sigs           <-chan ssh.Signal // signals from the client; nil: none
	resize         <-chan ssh.Window // window changes not delivered through pty already; nil: none
}

// gwUserError is an error for the client whose text is msg.
type gwUserError struct {
	msg   string
	cause error
}

func (e *gwUserError) Error() string { return e.msg }
func (e *gwUserError) Unwrap() error { return e.cause }

// bridge runs opts' process in host hostID's container wired to st until its output ends, and
// returns its exit status; -1 with a nil error when the status is unknown (the client
// went away or the engine lost the process; it has been hung up). An error (a
// *gwUserError, whose text is for the client) means the process did not start.
func (g *Gateway) bridge(ctx context.Context, p app.Principal, hostID string, opts runtime.AttachOptions, action, detail string, st gwStreams) (int, error) {
	es, err := g.rt.Attach(ctx, hostID, opts)
	if err != nil {
		g.log.Warn("attach failed", "host", hostID, "err", err)
		return -1, &gwUserError{msg: gwPlain(err), cause: err}
	}
	defer es.Close()
	g.svc.AuditGateway(ctx, p, hostID, action, detail)
	if st.pty != nil {
		st.pty.attach(es, opts.Width, opts.Height)
	}

	// One control goroutine per session: client signals go to the process group (see
	// ExecSession.Signal); window changes resize its terminal; losing the connection or
	// the channel hangs the process up.
	wctx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	done := make(chan struct{})
	defer close(done)
	go func() {
		sigs, resize := st.sigs, st.resize
		for {
			select {
			case sig := <-sigs:
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := es.Signal(sctx, string(sig)); err != nil {
					g.log.Info("signal not delivered", "signal", sig, "err", err)
				}
				cancel()
			case w, ok := <-resize:
				if !ok {
					resize = nil
					continue
				}
				if st.pty != nil {
					st.pty.setWindow(w)
				}
			case <-wctx.Done(): // the connection is gone
				g.hangup(es)
				return
			case <-st.closed: // the client closed this session's channel
				cancelWait()
				g.hangup(es)
				return
			case <-done:
				return
			}
		}
	}()

	// stdin: client -> process. EOF is passed on without a TTY; with one, the terminal
	// stays open (like sshd, which cannot half-close a pty).
	go func() {
		_ = gwCopy(es.Stdin, st.stdin)
		if !opts.TTY {
			_ = es.Stdin.Close()
		}
	}()
	// stdout and stderr: process -> client, drained concurrently (with a TTY there is
	// only the terminal's output).
	if !opts.TTY {
		errDone := make(chan struct{})
		go func() {
			defer close(errDone)
			_ = gwCopy(st.stderr, es.Stderr)
		}()
		_, _ = io.Copy(st.stdout, es.Stdout) // the coalescing fast path (WriteTo)
		<-errDone
	} else {
		_ = gwCopy(st.stdout, es.Stdout)
	}

	// The output ended; the exit status follows when the process has exited (it may
	// have closed its output early). Waiting stops if the client goes away.
	code, err := es.Wait(wctx)
	if err != nil {
		if wctx.Err() == nil {
			g.log.Info("exit status unknown", "host", hostID, "err", err)
			g.hangup(es)
		}
		return -1, nil
	}
	return code, nil
}

// gwSmallBuf and gwBigBuf size gwCopy's buffers.
const (
	gwSmallBuf = 2 << 10
	gwBigBuf   = 32 << 10
)

var gwBufPool = sync.Pool{New: func() any { b := make([]byte, gwBigBuf); return &b }}

// gwCopy copies src to dst until EOF or an error. An idle session waits in a small read
// buffer; when a read fills it, data is flowing, and a pooled 32 KiB buffer is used until
// a read comes back short.
func gwCopy(dst io.Writer, src io.Reader) error {
	small := make([]byte, gwSmallBuf)
	for {
		n, err := src.Read(small)
		if n > 0 {
			if _, werr := dst.Write(small[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if n < len(small) {
			continue
		}
		bp := gwBufPool.Get().(*[]byte)
		big := *bp
		for {
			n, err = src.Read(big)
			if n > 0 {
				if _, werr := dst.Write(big[:n]); werr != nil {
					gwBufPool.Put(bp)
					return werr
				}
			}
			if err != nil || n < len(big) {
				break
			}
		}
		gwBufPool.Put(bp)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// hangup sends SIGHUP to a process whose client went away (the engine keeps exec processes
// running when their stream closes) and drops its streams.
func (g *Gateway) hangup(es *runtime.ExecSession) {
	// Bounded: many clients leaving at once must not flood the engine with kill execs.
	g.hangups <- struct{}{}
	defer func() { <-g.hangups }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if running, err := es.Running(ctx); err == nil && running {
		if err := es.Signal(ctx, "HUP"); err != nil {
			g.log.Info("hangup not delivered", "exec", es.ID, "err", err)
		}
	}
	_ = es.Close()
}

// ---- local port forwarding ----

// gwForwardData is the direct-tcpip extra data (RFC 4254 7.2).
type gwForwardData struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// directTCPIP serves -L forwards: the destination must be the container's own loopback
// (127.0.0.1, ::1 or localhost); the connection is dialled inside the container's network
// namespace.
func (g *Gateway) directTCPIP(_ *ssh.Server, _ *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	var d gwForwardData
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil {
		_ = newChan.Reject(gossh.ConnectionFailed, "malformed forward request")
		return
	}
	addrs, err := runtime.LoopbackAddrs(d.DestAddr)
	if err != nil || d.DestPort == 0 || d.DestPort > 65535 {
		_ = newChan.Reject(gossh.Prohibited, "only ports inside your workspace can be forwarded (127.0.0.1, ::1 or localhost)")
		return
	}
	p, err := g.principal(ctx, gwSessionKey(ctx))
	if err != nil {
		_ = newChan.Reject(gossh.Prohibited, "access denied")
		return
	}
	h, err := g.svc.GatewayHost(ctx, p, ctx.User())
	if err != nil {
		_ = newChan.Reject(gossh.Prohibited, "no such host")
		return
	}
	if err := g.svc.EnsureHostRunning(ctx, p, h.ID, func(line string) {
		g.log.Debug("forward waits for host", "host", h.ID, "progress", line)
	}); err != nil {
		_ = newChan.Reject(gossh.ConnectionFailed, gwPlain(err))
		return
	}
	rh, err := g.svc.Runtime().Inspect(ctx, h.ID)
	if err != nil || rh.State != app.StateRunning || rh.Pid <= 0 {
		_ = newChan.Reject(gossh.ConnectionFailed, "your workspace is not running")
		return
	}
	port := fmt.Sprint(d.DestPort)
	var conn net.Conn
	for _, a := range addrs {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err = g.dialNS(dctx, rh.Pid, "tcp", net.JoinHostPort(a, port))
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			// setns needs root (CAP_SYS_ADMIN) on the engine host.
			g.log.Error("port forwarding unavailable: cannot enter the container's network namespace", "err", err)
			_ = newChan.Reject(gossh.ConnectionFailed, "port forwarding is not available on this server")
			return
		}
		g.log.Debug("forward dial failed", "host", h.ID, "port", port, "err", err)
		_ = newChan.Reject(gossh.ConnectionFailed, "connection refused by "+net.JoinHostPort(d.DestAddr, port)+" in your workspace")
		return
	}
	ch, reqs, err := newChan.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go gossh.DiscardRequests(reqs)
	g.auditForward(ctx, p, h.ID, net.JoinHostPort(d.DestAddr, port))

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, ch)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			conn.Close()
			ch.Close()
		case <-gwWait(&wg):
		}
	}()
	wg.Wait()
	conn.Close()
	ch.Close()
}

func gwWait(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}

// auditForward records the first forward to each destination of a connection (a browser
// opens many connections through one -L; one event per destination is enough).
func (g *Gateway) auditForward(ctx ssh.Context, p app.Principal, hostID, dest string) {
	g.mu.Lock()
	seen, _ := ctx.Value(gwKeyForwards).(map[string]bool)
	if seen == nil {
		seen = map[string]bool{}
		ctx.SetValue(gwKeyForwards, seen)
	}
	first := !seen[dest]
	seen[dest] = true
	g.mu.Unlock()
	if first {
		g.svc.AuditGateway(ctx, p, hostID, "gateway.forward", "local forward to "+dest)
	}
}

var gwKeyForwards = &gwCtxKey{"forwards"}
