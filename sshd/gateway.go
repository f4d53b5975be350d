package sshd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/wish"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// GatewayConfig configures the SSH gateway.
type GatewayConfig struct {
	// HostSigner is the server's host key (required), from LoadOrCreateHostKey so it is the
	// same key across restarts and shared with the TUI door.
	HostSigner gossh.Signer
	// IdleTimeout closes a connection after this long without any traffic. Zero: 30m.
	IdleTimeout time.Duration
	// LoginGrace closes a connection that has not authenticated this long after it
	// connected (SSH_LOGIN_GRACE). Zero: DefaultLoginGrace (30 s).
	LoginGrace time.Duration
	// MaxUnauthPerIP caps the connections one address may hold open before they
	// authenticate. Zero: DefaultMaxUnauthPerIP.
	MaxUnauthPerIP int
	// Logger receives connection and session logs. Nil: slog.Default().
	Logger *slog.Logger
	// Ciphers the gateway offers, in x/crypto/ssh names. Nil: DefaultGatewayCiphers
	// (AES-GCM only, the fastest; see there for the clients this leaves out).
	Ciphers []string
}

// Gateway defaults.
const DefaultGatewayIdleTimeout = 30 * time.Minute

// ErrGatewayClosed is returned by Serve after Shutdown or Close.
var ErrGatewayClosed = ssh.ErrServerClosed

// Gateway is the SSH gateway: `ssh USER[+SHORTID]@host -p SSH_PROXY_PORT` lands in a login
// shell (or runs a command, or an SFTP server) as the workspace user (uid 1000, never
// root) inside the user's own container, bridged through the engine's exec API.
// The door only pipes bytes: authentication, authorization, throttling, the session limit,
// the environment allowed in, the workspace contract and audit are app.Service's
// (OpenSession, OpenForward), and app ends a session when the right it stands on ends.
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
	svc *app.Service
	cfg GatewayConfig
	log *slog.Logger
	srv *ssh.Server

	guard *loginGuard
	auth  *authenticator

	mu sync.Mutex // guards the connection leases kept in ssh contexts
}

// NewGateway builds the gateway on svc. Serve it on a listener.
func NewGateway(svc *app.Service, cfg GatewayConfig) (*Gateway, error) {
	if svc == nil {
		return nil, errors.New("sshd: gateway needs a service")
	}
	if cfg.HostSigner == nil {
		return nil, errors.New("sshd: gateway needs a host key")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultGatewayIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Ciphers) == 0 {
		cfg.Ciphers = DefaultGatewayCiphers
	}
	g := &Gateway{svc: svc, cfg: cfg, log: cfg.Logger.With("component", "ssh-gateway"),
		guard: newLoginGuard(svc, "gateway", cfg.LoginGrace, cfg.IdleTimeout, cfg.MaxUnauthPerIP)}
	g.auth = &authenticator{svc: svc, log: g.log, gateway: true}
	opts := append([]ssh.Option{
		wish.WithVersion("cloud-cli-proxy"),
		func(s *ssh.Server) error { s.AddHostKey(cfg.HostSigner); return nil },
		wish.WithIdleTimeout(cfg.IdleTimeout),
	}, g.auth.options()...)
	srv, err := wish.NewServer(append(opts,
		// Middleware runs last to first: recover, log, then the session (app opens it).
		wish.WithMiddleware(
			g.sessionMiddleware,
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
			s.ServerConfigCallback = func(ctx ssh.Context) *gossh.ServerConfig {
				return &gossh.ServerConfig{Config: gossh.Config{Ciphers: cfg.Ciphers}, AuthLogCallback: g.guard.authLog(ctx)}
			}
			s.ConnCallback = func(ctx ssh.Context, c net.Conn) net.Conn {
				gc := g.guard.wrap(ctx, c)
				if gc == nil {
					return nil
				}
				return newGwConn(gc)
			}
			s.ConnectionFailedCallback = func(conn net.Conn, err error) {
				if !errors.Is(err, io.EOF) {
					g.log.Debug("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
				}
			}
			return nil
		},
	)...)
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
