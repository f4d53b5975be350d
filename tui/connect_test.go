package tui

import (
	"io"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

type fakeExec struct{}

func (fakeExec) Run() error          { return nil }
func (fakeExec) SetStdin(io.Reader)  {}
func (fakeExec) SetStdout(io.Writer) {}
func (fakeExec) SetStderr(io.Writer) {}

// TestConnectHandsOver: with Options.Connect, enter on a host asks for that host's shell
// (the door runs it through tea.Exec) instead of ending the program, and the TUI says how
// the connection ended when it is back.
func TestConnectHandsOver(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	var asked []string
	d := e.open(alice, 80, 24, func(o *Options) {
		o.Connect = func(hostID string) tea.ExecCommand {
			asked = append(asked, hostID)
			return fakeExec{}
		}
	})
	hs, err := e.svc.ListOwnHosts(e.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	d.press("enter")
	if d.quit || d.m.Result().ConnectHostID != "" {
		t.Fatal("enter on a host ended the program although Connect is set")
	}
	if len(asked) != 1 || asked[0] != hs[0].ID {
		t.Fatalf("Connect asked for %v, want [%s]", asked, hs[0].ID)
	}
	// (The screen masks short ids: the message names the host by a plain name here.)
	d.send(connectedMsg{host: "myhost"})
	d.contains("connection to myhost closed")
	d.send(connectedMsg{host: "myhost", err: &ShellExit{Code: 3}})
	d.contains("connection to myhost closed (exit status 3)")
	d.send(connectedMsg{host: "myhost", err: &app.Error{Kind: app.KindUnavailable, Code: "x", Message: "your workspace could not be started"}})
	d.contains("cannot connect to myhost: your workspace could not be started")
	// From the detail screen too.
	d.press("i", "enter")
	if len(asked) != 2 || d.quit {
		t.Fatalf("enter on the host's details: Connect asked %v, quit %v", asked, d.quit)
	}
}
