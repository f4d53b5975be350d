package sshd

import (
	"context"
	"errors"
	"io"

	"github.com/charmbracelet/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Terminal is the client side of an interactive shell that Gateway.Shell bridges for
// another SSH front end (the TUI door): the client's keystrokes, its screen, and its
// terminal's type, size and size changes.
type Terminal struct {
	// In is the client's input. Shell reads it until the shell has exited and does not
	// wait for a pending Read to return: the caller makes that Read end (io.EOF) after
	// Shell returns, without consuming input (see the door's input hand-over).
	In io.Reader
	// Out is the client's terminal: the shell's output and the gateway's progress lines
	// ("starting your workspace…"), which end in "\r\n" (the client's terminal is raw).
	Out io.Writer
	// Term is the terminal type (TERM); empty means xterm.
	Term string
	// Width and Height are the terminal's size at the start (columns and rows).
	Width, Height int
	// Resize delivers the terminal's later sizes; nil: the size never changes.
	Resize <-chan ssh.Window
	// Env is the client's environment; like the gateway's env requests, only TERM, LANG
	// and LC_* are passed on.
	Env []string
	// Done, if not nil, is closed when the client has gone (its session ended): the shell
	// is then hung up, as on the gateway.
	Done <-chan struct{}
}

// Shell opens a login shell (`bash -l`, as the workspace user, uid 1000) on the terminal t
// inside the container of host hostID, for principal p, the way the gateway does for
// `ssh USER+SHORTID@HOST -p 2222`, and returns the shell's exit status when it exits
// (-1 if the status is unknown: the client went away, or app ended the session). app opens
// it (app.OpenSession): the sign-in must still stand, the host must be p's, the session
// counts against SSH_MAX_SESSIONS_PER_USER, a stopped host is started with progress written
// to t.Out, the session is audited as gateway.shell, and it ends when its right ends.
//
// An error means no shell ran; it is an *app.Error whose Message is meant for the user.
// Shell never ends the caller's SSH session: the TUI door calls it between two screens
// of its TUI, in the same session.
func (g *Gateway) Shell(ctx context.Context, p app.Principal, hostID string, t Terminal) (int, error) {
	pty := &gwPty{term: t.Term, win: ssh.Window{Width: t.Width, Height: t.Height}}
	if t.Width <= 0 || t.Height <= 0 {
		pty.win = ssh.Window{Width: 80, Height: 24}
	}
	w, h := pty.size()
	req := app.SessionRequest{
		HostID: hostID, Kind: app.SessionShell, Env: t.Env, Detail: "from the TUI",
		TTY: true, Term: t.Term, Width: w, Height: h,
		Progress: func(line string) { _, _ = io.WriteString(t.Out, line+"\r\n") },
		OnEnd: func(reason string) {
			_, _ = io.WriteString(t.Out, "\r\ncloud-cli-proxy: session ended: "+reason+"\r\n")
		},
	}
	code, err := g.run(ctx, p, req, gwStreams{stdin: t.In, stdout: t.Out, pty: pty, closed: t.Done, resize: t.Resize})
	if err != nil {
		return -1, gwAppError(app.KindUnavailable, app.CodeShellFailed, gwPlain(err), err)
	}
	return code, nil
}

// gwAppError is an app error with a message for the user; an app error in cause keeps
// its kind and code.
func gwAppError(kind app.Kind, code app.ErrorCode, msg string, cause error) *app.Error {
	var ae *app.Error
	if errors.As(cause, &ae) {
		kind, code = ae.Kind, ae.Code
	}
	return &app.Error{Kind: kind, Code: code, Message: msg, Err: cause}
}
