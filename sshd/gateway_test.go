package sshd_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
)

// TestGateway drives the gateway end to end with real clients against real containers.
// The subtests share one service and two hosts (alice's and bob's) to stay fast; they run
// in order.
func TestGateway(t *testing.T) {
	e := newGwEnv(t)
	aliceID, bobID := e.user("alice"), e.user("bob")
	aHost, bHost := e.host(aliceID), e.host(bobID)
	signer, pub, pemKey := gwKey(t)
	e.do("POST", "/v1/admin/users/"+aliceID+"/ssh-keys", e.admin, map[string]string{"public_key": pub, "name": "test"}, 201, nil)
	e.mustSucceed(aHost.Task)
	e.mustSucceed(bHost.Task)

	keyAuth := gossh.PublicKeys(signer)
	alice, hostKey, err := gwDial(e.addr, "", "alice", keyAuth)
	if err != nil {
		t.Fatalf("alice key login: %v", err)
	}
	defer alice.Close()

	t.Run("InteractiveShellWithPty", func(t *testing.T) {
		s, err := alice.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestPty("xterm-256color", 30, 100, gossh.TerminalModes{gossh.ECHO: 1}); err != nil {
			t.Fatal(err)
		}
		in, _ := s.StdinPipe()
		out, _ := s.StdoutPipe()
		w := gwWatchStream(out)
		if err := s.Shell(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(in, "echo hi-$((6*7)); echo \"term=$TERM size=$(stty size)\"\n")
		w.waitFor(t, "hi-42", 20*time.Second, nil)
		w.waitFor(t, "term=xterm-256color size=30 100", 10*time.Second, nil)
		// A window change reaches the container's terminal (asynchronously: ask until seen).
		if err := s.WindowChange(40, 132); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, "rows=40 132", 10*time.Second, func() { fmt.Fprintf(in, "echo rows=$(stty size)\n") })
		fmt.Fprintf(in, "exit 0\n")
		if err := s.Wait(); err != nil {
			t.Fatalf("shell exit: %v (output %q)", err, w.String())
		}
	})

	t.Run("ExecExitStatusAndStderrApart", func(t *testing.T) {
		stdout, stderr, code, err := gwRun(alice, `echo to-out; echo to-err >&2; exit 3`, nil)
		if err != nil {
			t.Fatal(err)
		}
		if code != 3 || stdout != "to-out\n" || stderr != "to-err\n" {
			t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
		}
		stdout, _, code, err = gwRun(alice, `id -u; id -g; pwd; shopt -q login_shell && echo login`, nil)
		if err != nil || code != 0 || stdout != "1000\n1000\n/home/workspace\nlogin\n" {
			t.Fatalf("identity: %q %d %v", stdout, code, err)
		}
	})

	t.Run("StdinPipingEndsWithEOF", func(t *testing.T) {
		data := strings.Repeat("line of piped data\n", 5000) // ~95 KB, more than one window
		stdout, _, code, err := gwRun(alice, "cat", strings.NewReader(data))
		if err != nil || code != 0 {
			t.Fatalf("cat: %d %v", code, err)
		}
		if stdout != data {
			t.Fatalf("cat echoed %d bytes, want %d", len(stdout), len(data))
		}
	})

	t.Run("ShellWithoutPtyAndExecWithPty", func(t *testing.T) {
		s, err := alice.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		s.Stdin = strings.NewReader("echo no-pty-$((1+1))\ntty || true\nexit 4\n")
		out, err := s.Output("")
		s.Close()
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 4 || string(out) != "no-pty-2\nnot a tty\n" {
			t.Fatalf("shell without pty: %q %v", out, err)
		}
		s, err = alice.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestPty("vt100", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
		out, err = s.Output("tty; echo $TERM")
		if err != nil || !strings.HasPrefix(string(out), "/dev/pts/") || !strings.HasSuffix(string(out), "vt100\r\n") {
			t.Fatalf("exec with pty: %q %v", out, err)
		}
	})

	t.Run("EnvAllowList", func(t *testing.T) {
		s, err := alice.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for k, v := range map[string]string{"LANG": "C.UTF-8", "LC_TIME": "C", "EVIL": "x", "LD_PRELOAD": "/tmp/x.so"} {
			_ = s.Setenv(k, v)
		}
		out, err := s.Output(`echo "$LANG|$LC_TIME|${EVIL-unset}|${LD_PRELOAD-unset}|$USER"`)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "C.UTF-8|C|unset|unset|workspace" {
			t.Fatalf("environment %q", got)
		}
	})

	t.Run("SignalReachesProcess", func(t *testing.T) {
		s, err := alice.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, _ := s.StdoutPipe()
		w := gwWatchStream(out)
		if err := s.Start(`echo ready; exec sleep 60`); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, "ready", 15*time.Second, nil)
		if err := s.Signal(gossh.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Wait() }()
		select {
		case err := <-done:
			var ee *gossh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 143 {
				t.Fatalf("after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("SIGTERM did not end the process")
		}
	})

	t.Run("SFTPRoundTrip", func(t *testing.T) {
		c, err := sftp.NewClient(alice)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		payload := bytes.Repeat([]byte("sftp payload \x00\xff\n"), 20000) // 320 KB, binary
		f, err := c.Create("/home/workspace/upload.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(payload); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := c.Stat("/home/workspace/upload.bin")
		if err != nil {
			t.Fatal(err)
		}
		if fs, ok := st.Sys().(*sftp.FileStat); !ok || fs.UID != 1000 || fs.GID != 1000 {
			t.Fatalf("uploaded file owner %+v", st.Sys())
		}
		r, err := c.Open("/home/workspace/upload.bin")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("download: %d bytes, err %v", len(got), err)
		}
		// The container sees the same bytes.
		stdout, _, _, _ := gwRun(alice, "sha256sum < upload.bin | cut -c1-16; stat -c %u:%g upload.bin", nil)
		if !strings.HasSuffix(stdout, "1000:1000\n") {
			t.Fatalf("in container: %q", stdout)
		}
	})

	t.Run("OpenSSHScp", func(t *testing.T) {
		scp, keyFile := gwOpenSSH(t, "scp", pemKey)
		dir := t.TempDir()
		src := filepath.Join(dir, "src.txt")
		content := []byte(strings.Repeat("scp through the gateway\n", 1000))
		if err := os.WriteFile(src, content, 0o644); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(e.addr)
		run := func(args ...string) {
			t.Helper()
			base := []string{"-P", port, "-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
				"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
			cmd := exec.Command(scp, append(base, args...)...)
			cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("scp %v: %v\n%s", args, err, out)
			}
		}
		// OpenSSH >= 9 speaks SFTP; -O is the legacy scp protocol (scp -t/-f in the container).
		for _, mode := range []string{"sftp", "legacy"} {
			var extra []string
			if mode == "legacy" {
				extra = []string{"-O"}
			}
			remote := "alice@127.0.0.1:/home/workspace/scp-" + mode + ".txt"
			back := filepath.Join(dir, "back-"+mode+".txt")
			run(append(extra, src, remote)...)
			run(append(extra, remote, back)...)
			got, err := os.ReadFile(back)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("%s round trip: %d bytes, %v", mode, len(got), err)
			}
		}
		stdout, _, _, _ := gwRun(alice, "stat -c %u scp-sftp.txt scp-legacy.txt", nil)
		if stdout != "1000\n1000\n" {
			t.Fatalf("scp'd files owned by %q", stdout)
		}
	})

	t.Run("LocalForwardIntoContainerOnly", func(t *testing.T) {
		_, stderr, code, err := gwRun(alice, `mkdir -p /tmp/www && echo hello > /tmp/www/gw-marker && cd /tmp/www && `+
			`{ nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & }`, nil)
		if err != nil || code != 0 {
			t.Fatalf("start server: %d %v %s", code, err, stderr)
		}
		get := func(dest string) (string, error) {
			c, err := alice.Dial("tcp", dest)
			if err != nil {
				return "", err
			}
			defer c.Close()
			fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
			b, err := io.ReadAll(c)
			return string(b), err
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			body, err := get("127.0.0.1:8000")
			if err == nil && strings.Contains(body, "gw-marker") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no listing through -L: %v %q", err, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if body, err := get("localhost:8000"); err != nil || !strings.Contains(body, "gw-marker") {
			t.Fatalf("localhost forward: %v %q", err, body)
		}
		if _, err := alice.Dial("tcp", "127.0.0.1:9"); err == nil || !strings.Contains(err.Error(), "connection refused by 127.0.0.1:9") {
			t.Fatalf("forward to a closed port: %v", err)
		}
		for _, dest := range []string{"10.0.0.1:80", "172.17.0.1:8000", "example.com:80", "0.0.0.0:8000"} {
			_, err := alice.Dial("tcp", dest)
			if err == nil || !strings.Contains(err.Error(), "only ports inside your workspace") {
				t.Fatalf("forward to %s: %v", dest, err)
			}
		}
		// Remote forwarding, agent forwarding, X11 and other channel types are refused.
		if ln, err := alice.Listen("tcp", "127.0.0.1:0"); err == nil {
			ln.Close()
			t.Fatal("remote forwarding (-R) was accepted")
		}
		s, err := alice.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
			t.Fatalf("agent forwarding: ok=%v err=%v", ok, err)
		}
		if ok, _ := s.SendRequest("x11-req", true, gossh.Marshal(struct {
			Single bool
			Proto  string
			Cookie string
			Screen uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00", 0})); ok {
			t.Fatal("X11 forwarding accepted")
		}
		s.Close()
		if _, _, err := alice.OpenChannel("x11", nil); err == nil {
			t.Fatal("x11 channel accepted")
		}
	})

	t.Run("HostSSHPasswordAndKeyboardInteractive", func(t *testing.T) {
		var res struct {
			SSHPassword string `json:"ssh_password"`
		}
		b := e.action(aHost.ID, "rotate-ssh-password")
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if res.SSHPassword == "" {
			t.Fatalf("no ssh password in %s", b)
		}
		c, _, err := gwDial(e.addr, "", "alice+"+aHost.ShortID, gossh.Password(res.SSHPassword))
		if err != nil {
			t.Fatalf("host password login: %v", err)
		}
		stdout, _, code, err := gwRun(c, "hostname", nil)
		c.Close()
		if err != nil || code != 0 || stdout == "" {
			t.Fatalf("exec as alice+shortid: %q %d %v", stdout, code, err)
		}
		ki := gossh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			if len(qs) != 1 || qs[0] != "Password: " {
				return nil, fmt.Errorf("questions %q", qs)
			}
			return []string{"password-alice"}, nil
		})
		c, _, err = gwDial(e.addr, "", "alice", ki)
		if err != nil {
			t.Fatalf("keyboard-interactive login: %v", err)
		}
		_, _, code, err = gwRun(c, "true", nil)
		c.Close()
		if err != nil || code != 0 {
			t.Fatalf("exec after keyboard-interactive: %d %v", code, err)
		}
	})

	t.Run("WrongCredentialsRefused", func(t *testing.T) {
		if c, _, err := gwDial(e.addr, "127.0.0.2", "alice", gossh.Password("not-the-password")); err == nil {
			c.Close()
			t.Fatal("wrong password accepted")
		}
		other, _, _ := gwKey(t)
		if c, _, err := gwDial(e.addr, "127.0.0.2", "alice", gossh.PublicKeys(other)); err == nil {
			c.Close()
			t.Fatal("unregistered key accepted")
		}
		if c, _, err := gwDial(e.addr, "127.0.0.2", "bob", keyAuth); err == nil { // alice's key, bob's name
			c.Close()
			t.Fatal("another user's key accepted")
		}
		if c, _, err := gwDial(e.addr, "127.0.0.2", "nobody", gossh.Password("x")); err == nil {
			c.Close()
			t.Fatal("unknown user accepted")
		}
	})

	t.Run("AnotherUsersHostIsNoSuchHost", func(t *testing.T) {
		c, _, err := gwDial(e.addr, "", "alice+"+bHost.ShortID, keyAuth)
		if err != nil {
			t.Fatalf("login (authentication itself succeeds): %v", err)
		}
		defer c.Close()
		stdout, stderr, code, err := gwRun(c, "hostname", nil)
		if err != nil || code != 1 || stdout != "" || strings.TrimSpace(stderr) != "no such host" {
			t.Fatalf("alice+bob's host: code %d stdout %q stderr %q err %v", code, stdout, stderr, err)
		}
		c2, _, err := gwDial(e.addr, "", "alice+zzzzzzzz", keyAuth)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if _, stderr, code, _ := gwRun(c2, "true", nil); code != 1 || strings.TrimSpace(stderr) != "no such host" {
			t.Fatalf("unknown short id: %d %q", code, stderr)
		}
	})

	t.Run("DisabledUserRefused", func(t *testing.T) {
		daveID := e.user("dave")
		e.do("PATCH", "/v1/admin/users/"+daveID, e.admin, map[string]string{"status": "disabled"}, 200, nil)
		if c, _, err := gwDial(e.addr, "127.0.0.3", "dave", gossh.Password("password-dave")); err == nil {
			c.Close()
			t.Fatal("disabled user authenticated")
		}
		// Disabled between authentication and the session: the session is refused.
		erinID := e.user("erin")
		c, _, err := gwDial(e.addr, "127.0.0.3", "erin", gossh.Password("password-erin"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		e.do("PATCH", "/v1/admin/users/"+erinID, e.admin, map[string]string{"status": "disabled"}, 200, nil)
		_, stderr, code, err := gwRun(c, "true", nil)
		if err != nil || code != 1 || !strings.Contains(stderr, "access denied") {
			t.Fatalf("session after disable: %d %q %v", code, stderr, err)
		}
		if _, err := c.Dial("tcp", "127.0.0.1:8000"); err == nil {
			t.Fatal("forward after disable accepted")
		}
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		addr := e.gateway(sshd.GatewayConfig{IdleTimeout: 700 * time.Millisecond})
		c, _, err := gwDial(addr, "", "alice", keyAuth)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Close()
			t.Fatal("idle connection not closed")
		}
	})

	t.Run("HostKeyStableAcrossInstances", func(t *testing.T) {
		addr := e.gateway(sshd.GatewayConfig{})
		_, key2, _ := gwDial(addr, "127.0.0.4", "nobody") // no auth methods: the handshake still shows the key
		if key2 == nil || hostKey == nil || !bytes.Equal(key2.Marshal(), hostKey.Marshal()) {
			t.Fatalf("host key changed between gateway instances on one data dir")
		}
		if key2.Type() != gossh.KeyAlgoED25519 {
			t.Fatalf("host key type %s", key2.Type())
		}
	})

	t.Run("StoppedHostStartsOnLogin", func(t *testing.T) {
		e.action(bHost.ID, "stop")
		c, _, err := gwDial(e.addr, "", "bob", gossh.Password("password-bob"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stdout, stderr, code, err := gwRun(c, "echo up", nil)
		if err != nil || code != 0 || stdout != "up\n" {
			t.Fatalf("exec on a stopped host: %d %q %q %v", code, stdout, stderr, err)
		}
		if !strings.Contains(stderr, "starting it") {
			t.Fatalf("no progress text on stderr: %q", stderr)
		}
	})

	t.Run("SessionsAreAudited", func(t *testing.T) {
		b := e.do("GET", "/v1/admin/events?limit=500&host_id="+aHost.ID, e.admin, nil, 200, nil)
		for _, action := range []string{"gateway.shell", "gateway.exec", "gateway.sftp", "gateway.forward"} {
			if !bytes.Contains(b, []byte(`"`+action+`"`)) {
				t.Errorf("no %s event for alice's host", action)
			}
		}
	})
}
