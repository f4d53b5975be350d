package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/wish"
	bm "github.com/charmbracelet/wish/bubbletea"
	"github.com/muesli/termenv"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tui"
)

// DoorConfig configures the TUI door.
type DoorConfig struct {
	// HostSigner is the server's host key (LoadOrCreateHostKey). Required.
	HostSigner gossh.Signer
	// Logger receives connection-level problems; nil discards them.
	Logger *slog.Logger
	// Connect, if set, opens a shell on one of the user's hosts in the same SSH session
	// (Gateway.Shell): when the user presses enter on a host, the TUI hands the terminal
	// over (bubbletea's Exec), Connect runs until the shell exits, and the TUI comes back,
	// with a message saying how the connection ended. Keystrokes go to the shell from the
	// moment enter was read, and to the TUI again once Connect has returned; window
	// changes follow the same way. Connect must not end the session. The message of an
	// *app.Error it returns is shown in the TUI. When Connect is nil, enter ends the TUI
	// and the door prints the host's access command instead.
	Connect func(ctx context.Context, p app.Principal, hostID string, t Terminal) (int, error)
	// LoginGrace bounds the time from connecting to authenticating (SSH_LOGIN_GRACE, like
	// OpenSSH's LoginGraceTime); zero means DefaultLoginGrace (30 s).
	LoginGrace time.Duration
	// MaxUnauthPerIP caps the connections one address may hold open before they
	// authenticate; zero means DefaultMaxUnauthPerIP.
	MaxUnauthPerIP int
	// IdleTimeout closes connections without traffic for this long; zero means never.
	IdleTimeout time.Duration
}

// Door is the SSH server that runs the TUI (with a PTY) or a plain command (without one)
// for admins, viewers and users, authenticated and authorized by app.Service.
type Door struct {
	svc   *app.Service
	cfg   DoorConfig
	log   *slog.Logger
	srv   *ssh.Server
	guard *loginGuard
	auth  *authenticator

	mu       sync.Mutex
	closing  bool
	active   sync.WaitGroup // sessions being handled
	sessions map[ssh.Session]*doorSession
	ptys     map[ssh.Session]ssh.Pty // the terminal each session asked for
}

// doorSession is the state of one TUI session.
type doorSession struct {
	p     app.Principal
	in    *doorInput
	win   *doorWinch
	model *tui.Model
	prog  *tea.Program
}

// NewDoor builds the door; call Serve to accept connections.
func NewDoor(svc *app.Service, cfg DoorConfig) (*Door, error) {
	if svc == nil {
		return nil, errors.New("sshd: door needs a service")
	}
	if cfg.HostSigner == nil {
		return nil, errors.New("sshd: door needs a host key")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Door{svc: svc, cfg: cfg, log: cfg.Logger, sessions: map[ssh.Session]*doorSession{},
		ptys: map[ssh.Session]ssh.Pty{}, guard: newLoginGuard(svc, "tui", cfg.LoginGrace, cfg.IdleTimeout, cfg.MaxUnauthPerIP)}
	d.auth = &authenticator{svc: svc, log: cfg.Logger}
	tuiHandler := bm.MiddlewareWithProgramHandler(d.program, termenv.Ascii)(d.afterTUI)
	// Built like the gateway: wish options, the shared authenticator and login guard, one
	// middleware (the session: TUI or command mode).
	opts := append([]ssh.Option{
		wish.WithVersion("cloud-cli-proxy"),
		func(s *ssh.Server) error { s.AddHostKey(cfg.HostSigner); return nil },
		wish.WithIdleTimeout(cfg.IdleTimeout),
	}, d.auth.options()...)
	srv, err := wish.NewServer(append(opts,
		wish.WithMiddleware(func(ssh.Handler) ssh.Handler {
			return func(s ssh.Session) { d.handle(s, tuiHandler) }
		}),
		func(s *ssh.Server) error {
			s.ConnCallback = d.connCallback
			s.ServerConfigCallback = func(ctx ssh.Context) *gossh.ServerConfig {
				return &gossh.ServerConfig{AuthLogCallback: d.guard.authLog(ctx)}
			}
			s.PtyHandler = d.ptyHandler
			s.ConnectionFailedCallback = func(c net.Conn, err error) {
				d.log.Debug("ssh door: connection failed", "remote", c.RemoteAddr().String(), "err", err)
			}
			// Only sessions: no port forwarding, no agent, no subsystems (sftp is the gateway's).
			s.ChannelHandlers = map[string]ssh.ChannelHandler{"session": ssh.DefaultSessionHandler}
			s.SubsystemHandlers = map[string]ssh.SubsystemHandler{}
			s.RequestHandlers = map[string]ssh.RequestHandler{}
			return nil
		})...)
	if err != nil {
		return nil, err
	}
	d.srv = srv
	return d, nil
}

// Serve accepts connections on ln until Shutdown; it then returns nil.
func (d *Door) Serve(ln net.Listener) error {
	err := d.srv.Serve(ln)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, ends every running TUI, waits until ctx ends for
// the other sessions (commands, shells opened through Connect) to finish, then closes every
// connection left.
func (d *Door) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.closing = true
	var progs []*tea.Program
	for _, ds := range d.sessions {
		if ds.prog != nil {
			progs = append(progs, ds.prog)
		}
	}
	d.mu.Unlock()
	for _, p := range progs {
		go p.Quit() // blocks until the program reads it or has ended
	}
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Shutdown(ctx) }()
	idle := make(chan struct{})
	go func() {
		d.active.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	_ = d.srv.Close() // connections without a session, or past the deadline
	if err := <-errc; err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}

// ------------------------------------------------------------------ authentication

// connCallback puts a new connection under the login guard (grace time, cap of
// unauthenticated connections per address), unless the door is closing.
func (d *Door) connCallback(ctx ssh.Context, c net.Conn) net.Conn {
	d.mu.Lock()
	closing := d.closing
	d.mu.Unlock()
	if closing {
		return nil
	}
	return d.guard.wrap(ctx, c)
}

// ------------------------------------------------------------------ sessions

// ptyHandler records the terminal a session asks for. The door neither allocates a PTY
// nor emulates one: an emulated PTY rewrites every \n the session writes into \r\n, for
// the whole connection, which would garble a shell that Connect bridges into the session.
// The TUI writes \r\n itself; command mode converts its own output.
func (d *Door) ptyHandler(_ ssh.Context, s ssh.Session, req ssh.Pty) (func() error, error) {
	d.mu.Lock()
	d.ptys[s] = req
	d.mu.Unlock()
	return func() error {
		d.mu.Lock()
		delete(d.ptys, s)
		d.mu.Unlock()
		return nil
	}, nil
}

// doorPtySession is a session with the terminal it asked for: Pty reports it, with the
// window changes, as an allocated or emulated PTY would.
type doorPtySession struct {
	ssh.Session
	pty   ssh.Pty
	winch <-chan ssh.Window
}

func (s *doorPtySession) Pty() (ssh.Pty, <-chan ssh.Window, bool) { return s.pty, s.winch, true }

func (d *Door) handle(s ssh.Session, tuiHandler ssh.Handler) {
	d.mu.Lock()
	pty, hasPty := d.ptys[s]
	closing := d.closing
	if !closing {
		d.active.Add(1)
	}
	d.mu.Unlock()
	stdout, stderr := io.Writer(s), io.Writer(s.Stderr())
	if hasPty {
		// The client's terminal is raw: end lines with \r\n.
		stdout, stderr = ssh.NewPtyWriter(stdout), ssh.NewPtyWriter(stderr)
	}
	if closing {
		fmt.Fprintln(stderr, "the server is shutting down")
		_ = s.Exit(1)
		return
	}
	defer d.active.Done()

	p, err := d.auth.principal(s.Context(), s.PublicKey())
	if err != nil {
		d.log.Info("ssh door: session refused", "user", s.User(), "remote", s.RemoteAddr().String(), "err", err)
		fmt.Fprintln(stderr, "access denied")
		_ = s.Exit(1)
		return
	}
	// The session lives with the right to it: app ends it (and closes the connection) when
	// the account is disabled, the key deleted, the password changed, or on a kill.
	lease, err := d.svc.TrackSession(p, app.SessionTUI, "", "", "ssh door", func(reason string) {
		if hasPty {
			_, _ = io.WriteString(s, "\x1b[?1049l") // leave the TUI's alternate screen
		}
		fmt.Fprintf(stderr, "\ncloud-cli-proxy: session ended: %s\n", reason)
		if conn, ok := s.Context().Value(ssh.ContextKeyConn).(gossh.Conn); ok {
			_ = conn.Close()
		}
	})
	if err != nil {
		fmt.Fprintln(stderr, "access denied")
		_ = s.Exit(1)
		return
	}
	defer lease.Close()
	if cmd := s.Command(); len(cmd) > 0 || !hasPty {
		_ = s.Exit(d.command(s.Context(), stdout, stderr, p, cmd))
		return
	}
	// The window changes, reported even for a PTY that is not emulated, go to the TUI or
	// to a shell opened by Connect, whichever has the terminal.
	_, winch, _ := s.Pty()
	win := newDoorWinch(pty.Window)
	go win.run(winch)
	ps := &doorPtySession{Session: s, pty: pty, winch: win.tui}
	d.mu.Lock()
	d.sessions[ps] = &doorSession{p: p, in: newDoorInput(s), win: win}
	d.mu.Unlock()
	tuiHandler(ps)
}

// program builds the TUI of a session (called by the wish bubbletea middleware, which
// also forwards window changes and quits the program when the connection drops).
func (d *Door) program(s ssh.Session) *tea.Program {
	d.mu.Lock()
	defer d.mu.Unlock()
	ds := d.sessions[s]
	if ds == nil || d.closing {
		return nil
	}
	pty, _, _ := s.Pty()
	in := ds.in.reader()
	var connect func(hostID string) tea.ExecCommand
	if d.cfg.Connect != nil {
		connect = func(hostID string) tea.ExecCommand {
			// Called while the TUI handles the enter key: stop its reads now, so that what
			// the user types next is the shell's.
			in.detach()
			return &doorShell{d: d, s: s, ds: ds, tuiIn: in, hostID: hostID}
		}
	}
	ds.model = tui.NewModel(d.svc, ds.p, tui.Options{
		Context:  s.Context(),
		Renderer: doorRenderer(s, pty),
		Width:    pty.Window.Width,
		Height:   pty.Window.Height,
		// Stop the program's reads at once, so no keystroke meant for what follows (the
		// host's shell) is swallowed, and the program does not wait for its input.
		OnQuit: in.detach,
		// A session outlives its login: before each key the service says whether the
		// account may still sign in, and with which role.
		Recheck: d.svc.LoginAllowed,
		Connect: connect,
	})
	ds.prog = tea.NewProgram(ds.model, tea.WithInput(in), tea.WithOutput(s), tea.WithAltScreen(),
		tea.WithoutSignalHandler(), tea.WithEnvironment(s.Environ()))
	return ds.prog
}

// doorRenderer styles a session's output by its terminal type, without querying the terminal.
func doorRenderer(s ssh.Session, pty ssh.Pty) *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard)
	profile := termenv.ANSI
	term := pty.Term
	colorterm := ""
	for _, kv := range s.Environ() {
		if v, ok := strings.CutPrefix(kv, "COLORTERM="); ok {
			colorterm = v
		}
	}
	switch {
	case term == "" || term == "dumb":
		profile = termenv.Ascii
	case colorterm == "truecolor" || colorterm == "24bit":
		profile = termenv.TrueColor
	case strings.Contains(term, "256color"):
		profile = termenv.ANSI256
	}
	r.SetColorProfile(profile)
	r.SetHasDarkBackground(true)
	return r
}

// afterTUI runs when the program has exited: without a Connect hook, it prints how to open
// the host the user chose.
func (d *Door) afterTUI(s ssh.Session) {
	d.mu.Lock()
	ds := d.sessions[s]
	delete(d.sessions, s)
	d.mu.Unlock()
	if ds == nil || ds.model == nil {
		return
	}
	ds.in.detachAll()
	res := ds.model.Result()
	if res.Ended != "" {
		fmt.Fprintf(ssh.NewPtyWriter(s.Stderr()), "%s\n", res.Ended)
		_ = s.Exit(1)
		return
	}
	hostID := res.ConnectHostID
	if hostID == "" || s.Context().Err() != nil {
		return
	}
	h, err := d.svc.GetOwnHost(s.Context(), ds.p, hostID)
	if err != nil {
		fmt.Fprintf(ssh.NewPtyWriter(s.Stderr()), "cannot connect: %s\n", doorErrorText(err))
		_ = s.Exit(1)
		return
	}
	fmt.Fprintf(ssh.NewPtyWriter(s), "Open a shell on your host %s with:\n\n    %s\n\n", h.ShortID, h.AccessCommand)
}

func doorErrorText(err error) string {
	if errors.Is(err, errDenied) {
		return err.Error()
	}
	return app.AsError(err).Message
}

// doorShell is the tea.ExecCommand that runs Connect while the TUI has handed the
// terminal over: input from a fresh reader of the session's input (nothing typed after the
// TUI stopped reading is lost), output straight to the client, window changes routed to
// the shell. When Connect returns, the TUI's reader is attached again and gets the
// terminal's latest size.
type doorShell struct {
	d      *Door
	s      ssh.Session
	ds     *doorSession
	tuiIn  *doorInputReader
	hostID string
}

func (c *doorShell) SetStdin(io.Reader)  {}
func (c *doorShell) SetStdout(io.Writer) {}
func (c *doorShell) SetStderr(io.Writer) {}

func (c *doorShell) Run() error {
	ds, s := c.ds, c.s
	in := ds.in.reader()
	resize := make(chan ssh.Window, 1)
	size := ds.win.toShell(resize)
	pty, _, _ := s.Pty()
	code, err := c.d.cfg.Connect(s.Context(), ds.p, c.hostID, Terminal{
		In: in, Out: s, Term: pty.Term, Width: size.Width, Height: size.Height,
		Resize: resize, Env: s.Environ(), Done: ds.in.done(),
	})
	ds.win.toTUI()
	in.detach()
	c.tuiIn.reattach()
	if err != nil {
		c.d.log.Info("ssh door: connect failed", "user", ds.p.Username, "host", c.hostID, "err", err)
		return err
	}
	c.d.log.Debug("ssh door: shell ended", "user", ds.p.Username, "host", c.hostID, "status", code)
	return &tui.ShellExit{Code: code} // the TUI shows the exit status
}

// ------------------------------------------------------------------ window changes

// doorWinch routes a session's window changes to the TUI or, while Connect runs, to the
// shell. Both destinations hold the latest size only (a slow reader never blocks the
// session's requests).
type doorWinch struct {
	tui   chan ssh.Window // read by the TUI middleware
	mu    sync.Mutex
	last  ssh.Window
	shell chan ssh.Window // non-nil while a shell has the terminal
}

func newDoorWinch(initial ssh.Window) *doorWinch {
	return &doorWinch{tui: make(chan ssh.Window, 1), last: initial}
}

// run forwards src until it closes (the session's requests ended).
func (w *doorWinch) run(src <-chan ssh.Window) {
	for win := range src {
		w.mu.Lock()
		w.last = win
		dst := w.tui
		if w.shell != nil {
			dst = w.shell
		}
		doorLatest(dst, win) // under mu: toTUI cannot slip between the choice and the send
		w.mu.Unlock()
	}
}

// toShell sends the window changes to ch from now on and returns the current size.
func (w *doorWinch) toShell(ch chan ssh.Window) ssh.Window {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shell = ch
	return w.last
}

// toTUI gives the window changes back to the TUI, with the current size (the terminal may
// have changed while the shell had it).
func (w *doorWinch) toTUI() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shell = nil
	doorLatest(w.tui, w.last)
}

// doorLatest puts win in ch (capacity 1), replacing a size not read yet.
func doorLatest(ch chan ssh.Window, win ssh.Window) {
	for {
		select {
		case ch <- win:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// ------------------------------------------------------------------ input

// doorInput reads a session's input in one goroutine and hands it to one reader at a
// time. A detached reader returns io.EOF at once and never consumes input, so when the
// TUI stops, what the user typed next goes to the host's shell.
type doorInput struct {
	src     io.Reader
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	err     error
	gen     int
	started bool
	ended   chan struct{} // closed when src has ended
}

const doorInputMax = 64 << 10

func newDoorInput(src io.Reader) *doorInput {
	in := &doorInput{src: src, ended: make(chan struct{})}
	in.cond = sync.NewCond(&in.mu)
	return in
}

// done is closed when the session's input has ended (the client closed the session).
func (in *doorInput) done() <-chan struct{} { return in.ended }

func (in *doorInput) pump() {
	b := make([]byte, 32<<10)
	for {
		n, err := in.src.Read(b)
		in.mu.Lock()
		in.buf = append(in.buf, b[:n]...)
		if err != nil {
			in.err = err
		}
		in.cond.Broadcast()
		for in.err == nil && len(in.buf) >= doorInputMax {
			in.cond.Wait()
		}
		in.mu.Unlock()
		if err != nil {
			close(in.ended)
			return
		}
	}
}

// reader returns a new reader; earlier ones are detached.
func (in *doorInput) reader() *doorInputReader {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.gen++
	if !in.started {
		in.started = true
		go in.pump()
	}
	in.cond.Broadcast()
	return &doorInputReader{in: in, gen: in.gen}
}

// detachAll detaches every reader handed out so far.
func (in *doorInput) detachAll() {
	in.mu.Lock()
	in.gen++
	in.cond.Broadcast()
	in.mu.Unlock()
}

type doorInputReader struct {
	in  *doorInput
	gen int
}

// reattach makes this (detached) reader the current one again, detaching any other.
func (r *doorInputReader) reattach() {
	in := r.in
	in.mu.Lock()
	in.gen++
	r.gen = in.gen
	in.cond.Broadcast()
	in.mu.Unlock()
}

// detach makes this reader return io.EOF from now on.
func (r *doorInputReader) detach() {
	in := r.in
	in.mu.Lock()
	if in.gen == r.gen {
		in.gen++
		in.cond.Broadcast()
	}
	in.mu.Unlock()
}

func (r *doorInputReader) Read(p []byte) (int, error) {
	in := r.in
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.buf) == 0 && in.err == nil && r.gen == in.gen {
		in.cond.Wait()
	}
	if r.gen != in.gen {
		return 0, io.EOF
	}
	if len(in.buf) > 0 {
		n := copy(p, in.buf)
		in.buf = in.buf[n:]
		in.cond.Broadcast()
		return n, nil
	}
	return 0, in.err
}
