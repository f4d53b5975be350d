package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The workspace contract: what every managed image provides for the sessions app opens.
const (
	// WorkspaceUser is USER and LOGNAME of uid 1000 in the managed images.
	WorkspaceUser = "workspace"
	// WorkspaceSFTPServer is the OpenSSH SFTP server inside the managed images.
	WorkspaceSFTPServer = "/usr/lib/openssh/sftp-server"
)

// SessionRequest is what a door asks OpenSession for.
type SessionRequest struct {
	// Login is the gateway login name (USER or USER+SHORTID) that picks the host; HostID,
	// when set, names the host instead (it must be the caller's).
	Login  string
	HostID string
	// Kind is SessionShell, SessionExec, SessionSFTP or SessionSubsystem.
	Kind SessionKind
	// Command is the command line of an exec; Subsystem the name of a subsystem.
	Command   string
	Subsystem string
	// Env is the client's environment; only TERM, LANG and LC_* pass.
	Env []string
	// TTY asks for a terminal of type Term (xterm when empty) and size Width×Height.
	TTY           bool
	Term          string
	Width, Height uint
	// ConnID is the lease id of the SSH connection the session runs on ("" for none).
	ConnID string
	// Detail is added to the audit event (e.g. "from the TUI").
	Detail string
	// Progress receives lines while a stopped host is started; nil: dropped.
	Progress func(line string)
	// OnEnd is called when app ends the session (its right ended) before the process is
	// stopped: the door tells its client why and stops piping.
	OnEnd func(reason string)
}

// Session is an open workspace session: a process in the caller's container that the door
// pipes bytes through. Close it in every case.
type Session struct {
	Host  HostRef
	Lease *SessionLease
	TTY   bool

	svc  *Service
	mu   sync.Mutex
	proc Process // nil until the process started
}

// HostRef names the host a session landed on.
type HostRef struct {
	ID      string
	ShortID string
	// Picked is set when the login did not name the host and the user has several: the
	// oldest was picked, and the door should say so (and how to name another).
	Picked bool
}

// Streams are the process's stdin, stdout and stderr.
func (s *Session) Streams() (io.WriteCloser, io.Reader, io.Reader) { return s.proc.Streams() }

// Resize sets the terminal size.
func (s *Session) Resize(w, h uint) error { return s.proc.Resize(w, h) }

// Signal delivers a client's signal to the process group.
func (s *Session) Signal(ctx context.Context, sig string) error { return s.proc.Signal(ctx, sig) }

// Wait returns the exit status once the process has exited.
func (s *Session) Wait(ctx context.Context) (int, error) { return s.proc.Wait(ctx) }

// Done is closed when app ended the session; Reason says why.
func (s *Session) Done() <-chan struct{} { return s.Lease.Done() }

// Hangup sends SIGHUP to a process whose client went away (the engine keeps exec processes
// running when their stream closes) and drops its streams.
func (s *Session) Hangup() { s.svc.stopProcess(s.proc, false) }

// Close unregisters the session and drops the process's streams (it does not stop it).
func (s *Session) Close() {
	s.Lease.Close()
	_ = s.proc.Close()
}

// stopProcess hangs a process up (SIGHUP) and, when kill is set and it is still running
// after a short grace, kills it; then it drops its streams. Bounded: many sessions ending at
// once must not flood the engine with kill execs.
func (s *Service) stopProcess(proc Process, kill bool) {
	s.sessions.hangups <- struct{}{}
	defer func() { <-s.sessions.hangups }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer proc.Close()
	if running, err := proc.Running(ctx); err != nil || !running {
		return
	}
	if err := proc.Signal(ctx, "HUP"); err != nil {
		s.log.Info("hangup not delivered", "err", err)
	}
	if !kill {
		return
	}
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); {
		if running, err := proc.Running(ctx); err != nil || !running {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := proc.Signal(ctx, "KILL"); err != nil {
		s.log.Info("kill not delivered", "err", err)
	}
}

var lcName = regexp.MustCompile(`^LC_[A-Z_]{1,32}$`)

// SessionEnv keeps the client's environment variables that are allowed into a workspace:
// TERM, LANG and LC_*, with sane values (the last of a name wins).
func SessionEnv(environ []string) []string {
	var out []string
	seen := map[string]int{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(v) > 256 || strings.ContainsAny(v, "\x00\n\r") {
			continue
		}
		if k != "TERM" && k != "LANG" && !lcName.MatchString(k) {
			continue
		}
		if i, dup := seen[k]; dup {
			out[i] = kv
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// sessionAttachOptions is how a session's process runs: as the workspace user in its home,
// with the client's allowed environment, on a terminal when asked (whose TERM wins).
func sessionAttachOptions(req SessionRequest, cmd []string) AttachOptions {
	env := SessionEnv(req.Env)
	env = append(env, "USER="+WorkspaceUser, "LOGNAME="+WorkspaceUser, "SHELL=/bin/bash")
	opts := AttachOptions{Cmd: cmd, Env: env, WorkingDir: WorkspaceHome}
	if req.TTY {
		opts.TTY = true
		opts.Width, opts.Height = req.Width, req.Height
		term := req.Term
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

// sessionHost resolves the host of a session request for p (p's own only); picked is set
// when the login named none and p has several hosts.
func (s *Service) sessionHost(ctx context.Context, p Principal, login, hostID string) (h Host, picked bool, err error) {
	err = s.store.View(ctx, func(tx Tx) error {
		if hostID != "" {
			got, err := tx.GetHost(hostID)
			if err != nil || got.UserID != p.UserID {
				return errNoSuchHost()
			}
			h = got
			return nil
		}
		_, shortID := ParseSSHLogin(login)
		var err error
		if h, err = s.pickHost(tx, p.UserID, shortID); err != nil {
			return err
		}
		if shortID == "" {
			hs, err := tx.ListHostsByUser(p.UserID)
			picked = err == nil && len(hs) > 1
		}
		return nil
	})
	if err != nil {
		e := s.event(p, "gateway.host", ResultDenied)
		e.UserID, e.Message = p.UserID, "no such host: "+truncate(login+hostID, 80)
		s.record(ctx, e)
		var ae *Error
		if errors.As(err, &ae) && ae.Code == CodeNoHost {
			return Host{}, false, err
		}
		return Host{}, false, errNoSuchHost()
	}
	return h, picked, nil
}

// errNoSuchHost is the refusal of a host that does not exist or is another user's (the
// same answer, so neither is told apart).
func errNoSuchHost() *Error {
	return &Error{Kind: KindNotFound, Code: CodeNotFound, Message: "no such host"}
}

// OpenSession opens a workspace session for p: it checks that p's sign-in still stands
// (LoginAllowed), resolves p's host, counts the session against the per-user limit,
// starts a stopped host (progress to req.Progress), starts the process the kind calls for
// (a login shell, `bash -lc COMMAND`, the SFTP server) as the workspace user with the
// allowed environment, audits it, and registers it so that the end of the right it stands
// on ends it. Errors are *Error with a message meant for the user.
func (s *Service) OpenSession(ctx context.Context, p Principal, req SessionRequest) (*Session, error) {
	var cmd []string
	action, detail := "gateway.shell", "login shell"
	switch req.Kind {
	case SessionShell:
		cmd = []string{"bash", "-l"}
	case SessionExec:
		cmd = []string{"bash", "-lc", req.Command}
		action, detail = "gateway.exec", req.Command
	case SessionSFTP:
		cmd = []string{WorkspaceSFTPServer}
		action, detail, req.TTY = "gateway.sftp", "sftp", false
	case SessionSubsystem:
		if req.Subsystem == "sftp" {
			req.Kind = SessionSFTP
			return s.OpenSession(ctx, p, req)
		}
		return nil, &Error{Kind: KindInvalid, Code: CodeUnsupportedSubsystem, Message: "subsystem " + truncate(req.Subsystem, 40) + " is not supported"}
	default:
		return nil, fmt.Errorf("app: session kind %q cannot be opened", req.Kind)
	}
	if req.Detail != "" {
		detail += " (" + req.Detail + ")"
	}
	p, err := s.LoginAllowed(ctx, p)
	if err != nil {
		s.refused(req.Kind, req.ConnID, "access_denied")
		return nil, &Error{Kind: KindUnauthenticated, Code: CodeAccessDenied, Message: "access denied", Err: err}
	}
	h, picked, err := s.sessionHost(ctx, p, req.Login, req.HostID)
	if err != nil {
		s.refused(req.Kind, req.ConnID, "no_host")
		return nil, err
	}
	sess := &Session{Host: HostRef{ID: h.ID, ShortID: h.ShortID, Picked: picked}, TTY: req.TTY, svc: s}
	lease, err := s.TrackSession(p, req.Kind, h.ID, req.ConnID, detail, func(reason string) {
		if req.OnEnd != nil {
			req.OnEnd(reason)
		}
		sess.mu.Lock()
		proc := sess.proc
		sess.mu.Unlock()
		if proc != nil {
			s.stopProcess(proc, true)
		}
	})
	if err != nil {
		return nil, err
	}
	sess.Lease = lease
	say := req.Progress
	if say == nil {
		say = func(string) {}
	}
	if err := s.EnsureHostRunning(ctx, p, h.ID, say); err != nil {
		lease.Close()
		s.refused(req.Kind, req.ConnID, "host_not_ready")
		return nil, userFacing(err, KindUnavailable, CodeHostNotReady)
	}
	proc, err := s.runtime.Attach(ctx, h.ID, sessionAttachOptions(req, cmd))
	if err != nil {
		lease.Close()
		s.refused(req.Kind, req.ConnID, "attach_failed")
		s.log.Warn("attach failed", "host", h.ID, "err", err)
		return nil, userFacing(err, KindUnavailable, CodeAttachFailed)
	}
	sess.mu.Lock()
	sess.proc = proc
	sess.mu.Unlock()
	select {
	case <-lease.Done(): // ended while it was starting
		s.stopProcess(proc, true)
		return nil, &Error{Kind: KindUnauthenticated, Code: CodeSessionEnded, Message: lease.Reason()}
	default:
	}
	s.AuditGateway(ctx, p, h.ID, action, detail)
	return sess, nil
}

// userFacing turns an error into an *Error whose message is meant for the user: an app
// error keeps its own; an engine error says the workspace is unavailable.
func userFacing(err error, kind Kind, code ErrorCode) *Error {
	var ae *Error
	if errors.As(err, &ae) && ae.Message != "" {
		return ae
	}
	msg := "your workspace is not available right now"
	var re *RuntimeError
	if errors.As(err, &re) {
		msg += "; try again later"
	}
	return &Error{Kind: kind, Code: code, Message: msg, Err: err}
}

// ForwardRequest is a -L forward a door asks OpenForward for.
type ForwardRequest struct {
	Login    string // the gateway login name (picks the host)
	DestHost string // 127.0.0.1, ::1 or localhost
	DestPort uint32
	ConnID   string // the SSH connection's lease id
	// OnEnd is called when app ends the forward; the door closes its channel.
	OnEnd func(reason string)
}

// Forward is an open -L forward: Conn reaches the port inside the caller's workspace.
type Forward struct {
	Conn  net.Conn
	Lease *SessionLease
	Host  HostRef
}

// Close unregisters the forward and closes its connection.
func (f *Forward) Close() {
	f.Lease.Close()
	_ = f.Conn.Close()
}

// ErrNotLoopback is the refusal of a forward to anywhere but the workspace's own loopback.
var ErrNotLoopback = errors.New("only ports inside your workspace can be forwarded (127.0.0.1, ::1 or localhost)")

// LoopbackAddrs maps a forwarding destination host to the loopback addresses to try
// inside the container: 127.0.0.1 and ::1 as given, localhost as 127.0.0.1 then ::1.
// Anything else is ErrNotLoopback.
func LoopbackAddrs(host string) ([]string, error) {
	switch strings.ToLower(host) {
	case "127.0.0.1":
		return []string{"127.0.0.1"}, nil
	case "::1", "[::1]":
		return []string{"::1"}, nil
	case "localhost", "localhost.":
		return []string{"127.0.0.1", "::1"}, nil
	}
	return nil, ErrNotLoopback
}

// OpenForward opens a -L forward for p into the loopback of p's workspace: the policy (own
// loopback only), the sign-in check, a stopped host started, the dial inside the
// container's network namespace, the audit (first forward to each destination of a
// connection) and the registration, so the end of the right closes it.
func (s *Service) OpenForward(ctx context.Context, p Principal, req ForwardRequest) (*Forward, error) {
	addrs, err := LoopbackAddrs(req.DestHost)
	if err != nil || req.DestPort == 0 || req.DestPort > 65535 {
		s.refused(SessionForward, req.ConnID, "not_loopback")
		return nil, &Error{Kind: KindForbidden, Code: CodeForwardRefused, Message: ErrNotLoopback.Error()}
	}
	p, err = s.LoginAllowed(ctx, p)
	if err != nil {
		s.refused(SessionForward, req.ConnID, "access_denied")
		return nil, &Error{Kind: KindUnauthenticated, Code: CodeAccessDenied, Message: "access denied", Err: err}
	}
	h, _, err := s.sessionHost(ctx, p, req.Login, "")
	if err != nil {
		return nil, err
	}
	rh, err := s.ensureRunning(ctx, p, h.ID, func(string) {})
	if err != nil {
		return nil, userFacing(err, KindUnavailable, CodeHostNotReady)
	}
	if rh.State != StateRunning || rh.Pid <= 0 {
		return nil, &Error{Kind: KindUnavailable, Code: CodeHostNotRunning, Message: "your workspace is not running"}
	}
	port := strconv.FormatUint(uint64(req.DestPort), 10)
	var conn net.Conn
	for _, a := range addrs {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err = s.runtime.DialNetns(dctx, rh.Pid, "tcp", net.JoinHostPort(a, port))
		cancel()
		if err == nil {
			break
		}
	}
	dest := net.JoinHostPort(req.DestHost, port)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			s.log.Error("port forwarding unavailable: cannot enter the container's network namespace", "err", err)
			return nil, &Error{Kind: KindUnavailable, Code: CodeForwardUnavailable, Message: "port forwarding is not available on this server"}
		}
		return nil, &Error{Kind: KindUnavailable, Code: CodeForwardRefused, Message: "connection refused by " + dest + " in your workspace"}
	}
	f := &Forward{Conn: conn, Host: HostRef{ID: h.ID, ShortID: h.ShortID}}
	lease, err := s.TrackSession(p, SessionForward, h.ID, req.ConnID, "local forward to "+dest, func(reason string) {
		if req.OnEnd != nil {
			req.OnEnd(reason)
		}
		_ = conn.Close()
	})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	f.Lease = lease
	if s.firstForward(req.ConnID, dest) {
		s.AuditGateway(ctx, p, h.ID, "gateway.forward", "local forward to "+dest)
	}
	return f, nil
}

// firstForward reports whether dest is the first forward destination of connection connID
// (a browser opens many connections through one -L; one event per destination is enough).
func (s *Service) firstForward(connID, dest string) bool {
	r := s.sessions
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byID[connID]
	if !ok {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	first := !c.seen[dest]
	c.seen[dest] = true
	return first
}
