package sshd_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// TestGatewayRightsEnd runs against the real engine: the end of a right ends what it opened
// within a second (a deleted key ends an open OpenSSH ControlMaster connection and its
// running command; disabling a user ends a running command), and the per-user session
// limit is SSH_MAX_SESSIONS_PER_USER.
func TestGatewayRightsEnd(t *testing.T) {
	le := newGwEnv(t, func(c *app.Config) { c.MaxSessionsPerUser = 2 })
	ids := map[string]string{}
	hosts := map[string]gwHost{}
	for _, name := range []string{"alice", "carol", "dave"} {
		ids[name] = le.user(name)
		h := le.host(ids[name])
		le.mustSucceed(h.Task)
		hosts[name] = h
	}
	signer, pub, pemKey := gwKey(t)
	var key struct{ ID string }
	le.do("POST", "/v1/admin/users/"+ids["carol"]+"/ssh-keys", le.admin, map[string]string{"public_key": pub, "name": "laptop"}, 201, &key)

	// gone polls, over a password login, until no process runs cmd in user's container.
	gone := func(t *testing.T, user, pattern string, within time.Duration) {
		t.Helper()
		c, _, err := gwDial(le.addr, "", user, gossh.Password("password-"+user))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadline := time.Now().Add(within)
		for {
			out, _, _, err := gwRun(c, "pgrep -f '"+pattern+"' || echo gone", nil)
			if err == nil && strings.TrimSpace(out) == "gone" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q still runs in %s's container: %q %v", pattern, user, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("DeletedKeyEndsControlMasterAndCommand", func(t *testing.T) {
		sshBin, keyFile := gwOpenSSH(t, "ssh", pemKey)
		dir := t.TempDir()
		host, port := splitAddr(t, le.addr)
		sock := filepath.Join(dir, "cm")
		base := []string{"-p", port, "-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-S", sock}
		master := exec.Command(sshBin, append(base, "-M", "-N", "-o", "ControlPersist=no", "carol@"+host)...)
		master.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		if err := master.Start(); err != nil {
			t.Fatal(err)
		}
		masterDone := make(chan error, 1)
		go func() { masterDone <- master.Wait() }()
		defer master.Process.Kill()
		check := func() error {
			c := exec.Command(sshBin, append(base, "-O", "check", "carol@"+host)...)
			return c.Run()
		}
		deadline := time.Now().Add(20 * time.Second)
		for check() != nil {
			if time.Now().After(deadline) {
				t.Fatal("ControlMaster did not come up")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A command over the shared connection, running until its right ends.
		var out, errOut bytes.Buffer
		cmd := exec.Command(sshBin, append(base, "carol@"+host, "echo up; exec sleep 987")...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmdDone := make(chan error, 1)
		go func() { cmdDone <- cmd.Wait() }()
		deadline = time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), "up") {
			if time.Now().After(deadline) {
				t.Fatalf("command did not start: %q %q", out.String(), errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}

		start := time.Now()
		le.do("DELETE", "/v1/admin/users/"+ids["carol"]+"/ssh-keys/"+key.ID, le.admin, nil, 204, nil)
		select {
		case <-cmdDone:
		case <-time.After(time.Second + time.Since(start)):
			t.Fatal("the running command did not end within 1 s of the key's deletion")
		}
		select {
		case <-masterDone:
		case <-time.After(time.Second):
			t.Fatal("the ControlMaster connection still open 1 s after the key's deletion")
		}
		if !strings.Contains(errOut.String(), app.EndKeyDeleted) {
			t.Errorf("client not told why: %q", errOut.String())
		}
		gone(t, "carol", "sleep 98[7]", 3*time.Second)
		// And the key opens nothing any more.
		if c, _, err := gwDial(le.addr, "", "carol", gossh.PublicKeys(signer)); err == nil {
			c.Close()
			t.Fatal("a deleted key signed in")
		}
	})

	t.Run("DisabledUserCommandEnds", func(t *testing.T) {
		c, _, err := gwDial(le.addr, "", "dave", gossh.Password("password-dave"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var errOut bytes.Buffer
		s.Stderr = &errOut
		out, _ := s.StdoutPipe()
		w := gwWatchStream(out)
		if err := s.Start("echo up; exec sleep 876"); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, "up", 15*time.Second, nil)
		done := make(chan error, 1)
		go func() { done <- s.Wait() }()
		start := time.Now()
		le.do("PATCH", "/v1/admin/users/"+ids["dave"], le.admin, map[string]string{"status": "disabled"}, 200, nil)
		select {
		case <-done:
		case <-time.After(time.Second + time.Since(start)):
			t.Fatal("a disabled user's command still runs 1 s later")
		}
		if !strings.Contains(errOut.String(), app.EndUserDisabled) {
			t.Errorf("client not told why: %q", errOut.String())
		}
		if _, err := c.NewSession(); err == nil {
			t.Error("a disabled user's connection opened a new channel")
		}
		// The process is gone: enable again to look (enabling does not restart anything).
		le.do("PATCH", "/v1/admin/users/"+ids["dave"], le.admin, map[string]string{"status": "active"}, 200, nil)
		gone(t, "dave", "sleep 87[6]", 3*time.Second)
	})

	t.Run("SeveralHostsSaysWhichOne", func(t *testing.T) {
		second := le.host(ids["alice"])
		le.mustSucceed(second.Task)
		c, _, err := gwDial(le.addr, "", "alice", gossh.Password("password-alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, stderr, code, err := gwRun(c, "true", nil)
		if err != nil || code != 0 || !strings.Contains(stderr, "this is "+hosts["alice"].ShortID) || !strings.Contains(stderr, "alice+SHORTID") {
			t.Fatalf("plain login with two hosts: %d %q %v", code, stderr, err)
		}
		c2, _, err := gwDial(le.addr, "", "alice+"+second.ShortID, gossh.Password("password-alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if _, stderr, code, err := gwRun(c2, "true", nil); err != nil || code != 0 || stderr != "" {
			t.Fatalf("login naming the host: %d %q %v", code, stderr, err)
		}
	})

	t.Run("SessionLimitPerUser", func(t *testing.T) {
		c, _, err := gwDial(le.addr, "", "alice", gossh.Password("password-alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var open []*gossh.Session
		for i := 0; i < 2; i++ {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			out, _ := s.StdoutPipe()
			w := gwWatchStream(out)
			if err := s.Start("echo up; exec sleep 60"); err != nil {
				t.Fatal(err)
			}
			w.waitFor(t, "up", 15*time.Second, nil)
			open = append(open, s)
		}
		_, stderr, code, err := gwRun(c, "true", nil)
		if err != nil || code != 1 || !strings.Contains(stderr, "SSH_MAX_SESSIONS_PER_USER=2") {
			t.Fatalf("third session: %d %q %v", code, stderr, err)
		}
		open[0].Close() // the client closes the channel: the gateway hangs up the process
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, _, code, err := gwRun(c, "true", nil)
			if err == nil && code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slot not released after a session closed: %d %v", code, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		open[1].Close()
	})

}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}
