package sshd

import (
	"context"
	"errors"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

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
// session whose terminal follows window changes.
type gwPty struct {
	term string
	mu   sync.Mutex
	win  ssh.Window
	es   *app.Session
	sent ssh.Window // the size last given to es
}

func (p *gwPty) size() (w, h uint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return uint(max(p.win.Width, 0)), uint(max(p.win.Height, 0))
}

// attach makes window changes resize es from now on; w, h is the size es started with.
func (p *gwPty) attach(es *app.Session, w, h uint) {
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
		g.log.Debug("session start", "login", s.User(), "remote", remoteIP(s.RemoteAddr()), "kind", kind)
		next(s)
		g.log.Debug("session end", "login", s.User(), "kind", kind, "duration", time.Since(start).String())
	}
}

// gwPlain is the user-facing text of an error from app: its message, never internals.
func gwPlain(err error) string {
	var ae *app.Error
	if errors.As(err, &ae) && ae.Message != "" {
		return ae.Message
	}
	return "your workspace is not available right now"
}

// sessionMiddleware is the end of the chain: app opens the session (shell, command, sftp)
// and the gateway pipes it to the client.
func (g *Gateway) sessionMiddleware(_ ssh.Handler) ssh.Handler {
	return func(s ssh.Session) {
		ctx := s.Context()
		p, err := g.auth.principal(ctx, s.PublicKey())
		if err != nil {
			g.log.Info("session refused", "login", s.User(), "remote", remoteIP(s.RemoteAddr()), "err", err)
			g.fail(s, "access denied")
			return
		}
		connID, err := g.connLease(ctx, p)
		if err != nil {
			g.fail(s, gwPlain(err))
			return
		}
		pty := g.ptyOf(s)
		req := app.SessionRequest{Login: s.User(), Env: s.Environ(), ConnID: connID, Kind: app.SessionShell}
		switch {
		case s.Subsystem() == "sftp":
			req.Kind, pty = app.SessionSFTP, nil
		case s.Subsystem() != "":
			req.Kind, req.Subsystem = app.SessionSubsystem, s.Subsystem()
		case s.RawCommand() != "":
			req.Kind, req.Command = app.SessionExec, s.RawCommand()
		}
		if pty != nil {
			req.TTY, req.Term = true, pty.term
			req.Width, req.Height = pty.size()
		}
		nl := g.newline(s)
		req.Progress = func(line string) { _, _ = io.WriteString(s.Stderr(), line+nl) }
		req.OnEnd = func(reason string) {
			_, _ = io.WriteString(s.Stderr(), nl+"cloud-cli-proxy: session ended: "+reason+nl)
			_ = s.Close()
		}
		sigs := make(chan ssh.Signal, 4)
		s.Signals(sigs)
		defer s.Signals(nil)
		code, err := g.run(ctx, p, req, gwStreams{
			stdin: s, stdout: s, stderr: s.Stderr(), pty: pty, closed: gwState(s).closed, sigs: sigs,
			banner: func(h app.HostRef) {
				if h.Picked && req.Kind != app.SessionSFTP {
					_, _ = io.WriteString(s.Stderr(), "cloud-cli-proxy: you have several hosts; this is "+h.ShortID+
						" (log in as "+s.User()+"+SHORTID to pick another)"+nl)
				}
			},
		})
		switch {
		case err != nil:
			g.fail(s, gwPlain(err))
		case code >= 0:
			_ = s.Exit(code)
		}
	}
}

// gwStreams connects a process in the container to its client.
type gwStreams struct {
	stdin          io.Reader
	stdout, stderr io.Writer         // stderr is unused with a pty (the terminal merges them)
	pty            *gwPty            // the terminal, nil without one
	closed         <-chan struct{}   // closed when the client ends the session; nil: never
	sigs           <-chan ssh.Signal // signals from the client; nil: none
	resize         <-chan ssh.Window // window changes not delivered through pty already; nil: none
	banner         func(app.HostRef) // told which host the session landed on; nil: nothing
}

// run has app open req's session for p, pipes it to st until its output ends, and returns
// its exit status: -1 with a nil error when the status is unknown (the client went away, or
// app ended the session because its right ended; the process has been hung up). An error
// (an *app.Error whose message is for the client) means no process started.
func (g *Gateway) run(ctx context.Context, p app.Principal, req app.SessionRequest, st gwStreams) (int, error) {
	sess, err := g.svc.OpenSession(ctx, p, req)
	if err != nil {
		return -1, err
	}
	defer sess.Close()
	if st.banner != nil {
		st.banner(sess.Host)
	}
	if st.pty != nil {
		st.pty.attach(sess, req.Width, req.Height)
	}
	stdin, stdout, stderr := sess.Streams()

	// One control goroutine per session: client signals go to the process group; window
	// changes resize its terminal; losing the connection or the channel hangs the process
	// up; app ending the session stops waiting (app stops the process itself).
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
				if err := sess.Signal(sctx, string(sig)); err != nil {
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
			case <-sess.Done():
				cancelWait()
				return
			case <-wctx.Done(): // the connection is gone
				sess.Hangup()
				return
			case <-st.closed: // the client closed this session's channel
				cancelWait()
				sess.Hangup()
				return
			case <-done:
				return
			}
		}
	}()

	// stdin: client -> process. EOF is passed on without a TTY; with one, the terminal
	// stays open (like sshd, which cannot half-close a pty).
	go func() {
		_ = gwCopy(stdin, st.stdin)
		if !req.TTY {
			_ = stdin.Close()
		}
	}()
	// stdout and stderr: process -> client, drained concurrently (with a TTY there is
	// only the terminal's output).
	if !req.TTY {
		errDone := make(chan struct{})
		go func() {
			defer close(errDone)
			_ = gwCopy(st.stderr, stderr)
		}()
		_, _ = io.Copy(st.stdout, stdout) // the coalescing fast path (WriteTo)
		<-errDone
	} else {
		_ = gwCopy(st.stdout, stdout)
	}

	// The output ended; the exit status follows when the process has exited (it may
	// have closed its output early). Waiting stops if the client goes away.
	code, err := sess.Wait(wctx)
	select {
	case <-sess.Done():
		return -1, nil
	default:
	}
	if err != nil {
		if wctx.Err() == nil {
			g.log.Info("exit status unknown", "host", sess.Host.ID, "err", err)
			sess.Hangup()
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
