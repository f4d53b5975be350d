package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tui"
)

// Exit codes of command mode.
const (
	doorExitOK     = 0
	doorExitFailed = 1 // the service refused or failed
	doorExitUsage  = 2 // unknown command or arguments
	doorCmdName    = "ssh USER@HOST"
)

// command runs the door without a PTY: `ssh admin@HOST hosts` prints a plain table and
// exits. It never reads the session's input, so it cannot hang.
func (d *Door) command(ctx context.Context, out, errw io.Writer, p app.Principal, args []string) int {
	if len(args) == 0 {
		doorUsage(out, p)
		return doorExitOK
	}
	name := strings.ToLower(args[0])
	switch name {
	case "help", "-h", "--help":
		doorUsage(out, p)
		return doorExitOK
	case "whoami":
		if len(args) > 1 {
			fmt.Fprintf(errw, "whoami takes no arguments\n")
			return doorExitUsage
		}
		access := "read-write"
		if !p.CanWrite() {
			access = "read-only"
		}
		fmt.Fprintf(out, "username: %s\nuser id:  %s\nrole:     %s\naccess:   %s\nauth:     %s\nfrom:     %s\n",
			p.Username, p.UserID, p.Role, access, p.Method, p.SourceIP)
		return doorExitOK
	}
	if len(args) > 1 {
		fmt.Fprintf(errw, "%s takes no arguments\n", name)
		return doorExitUsage
	}
	err := tui.PrintTable(ctx, d.svc, p, name, out)
	switch {
	case errors.Is(err, tui.ErrUnknownView):
		fmt.Fprintf(errw, "unknown command %q; try: %s\n", args[0], strings.Join(doorCommands(p), ", "))
		return doorExitUsage
	case err != nil:
		fmt.Fprintf(errw, "error: %s\n", doorErrorText(err))
		return doorExitFailed
	}
	return doorExitOK
}

func doorCommands(p app.Principal) []string {
	return append(tui.TableNames(p), "whoami", "help")
}

func doorUsage(w io.Writer, p app.Principal) {
	fmt.Fprintf(w, "cloud-cli-proxy: signed in as %s (%s).\n\n", p.Username, p.Role)
	fmt.Fprintf(w, "Run without a command in a terminal for the interactive UI, or ask for one table:\n\n")
	for _, c := range doorCommands(p) {
		fmt.Fprintf(w, "  %s %s\n", doorCmdName, c)
	}
}
