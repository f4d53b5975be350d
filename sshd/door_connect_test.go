package sshd_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
)

// TestDoorConnectShell is the TUI door's enter-to-connect end to end, against a real
// container: a user logs in to the door (x/crypto client with a PTY), presses enter on
// their host, which is stopped and gets started with progress shown; lands in the
// container's login shell as uid 1000 in the same SSH session, where a window change
// reaches the terminal; exits the shell and is back in the TUI, then quits cleanly.
// Another user cannot open that host through the same bridge.
func TestDoorConnectShell(t *testing.T) {
	e := newGwEnv(t)
	aliceID, _ := e.user("alice"), e.user("bob")
	aHost := e.host(aliceID)
	e.mustSucceed(aHost.Task)
	e.action(aHost.ID, "stop") // enter has to start it

	gw, _ := e.startGateway(sshd.GatewayConfig{})
	signer, _, err := sshd.LoadOrCreateHostKey(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serveDoor(t, e.svc, sshd.DoorConfig{HostSigner: signer, Connect: gw.Shell, Logger: testenv.DiscardLogger()})

	denv := &doorEnv{t: t, addr: addr, hostKey: signer.PublicKey()}
	tm := denv.openTerm(denv.mustDial("alice", doorPassword("password-alice")))
	tm.waitFor("Hosts (1)", aHost.ShortID, "stopped", "<enter> connect")

	tm.typ("\r")
	tm.waitWithin(90*time.Second, "Your workspace is stopped; starting it", "start container: done", "workspace@")
	tm.typ("echo $((6*7))\r")
	tm.waitWithin(30*time.Second, "42\r\n")
	tm.typ("id -u\r")
	tm.waitFor("1000\r\n")
	if err := tm.sess.WindowChange(40, 132); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		tm.typ("stty size\r")
		time.Sleep(200 * time.Millisecond)
		if strings.Contains(tm.screen(), "40 132") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell's terminal never saw the window change:\n%s", tm.screen())
		}
	}

	tm.typ("exit 3\r")
	tm.waitWithin(20*time.Second, "connection to "+aHost.ShortID+" closed (exit status 3)", "Hosts (1)", "running")
	// The keyboard is the TUI's again.
	tm.typ(":keys\r")
	tm.waitFor("[keys]")
	tm.typ("q")
	if err := tm.wait(); err != nil {
		t.Fatalf("quitting the TUI after the shell: %v", err)
	}

	// The bridge's checks are the gateway's: bob cannot open alice's host.
	ctx := context.Background()
	bob, err := e.svc.SSHPasswordLogin(ctx, "127.0.0.1", "bob", "password-bob", false)
	if err != nil {
		t.Fatal(err)
	}
	code, err := gw.Shell(ctx, bob, aHost.ID, sshd.Terminal{In: strings.NewReader(""), Out: io.Discard,
		Width: 80, Height: 24, Resize: make(chan ssh.Window)})
	if err == nil || app.AsError(err).Message != "no such host" || code != -1 {
		t.Fatalf("bob opening alice's host: %d %v", code, err)
	}
}
