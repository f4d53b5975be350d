package cmd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// server is one in-process cmd.Serve.
type server struct {
	t      *testing.T
	addr   string // host:port of the REST API
	url    string
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	cancel context.CancelFunc
	done   chan error // receives Serve's result once
}

// startServe runs cmd.Serve with exactly env (plus nothing from the real environment) and
// waits for the ready callback. It fails the test if Serve returns first.
func startServe(t *testing.T, env map[string]string) *server {
	t.Helper()
	s, err := tryServe(t, env)
	if err != nil {
		t.Fatalf("Serve: %v\nstderr:\n%s", err, s.stderr)
	}
	return s
}

// tryServe is startServe returning Serve's error when it stops before becoming ready.
func tryServe(t *testing.T, env map[string]string) (*server, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{t: t, stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		s.done <- cmd.Serve(ctx, nil, envOf(env), s.stdout, s.stderr, func(addr string) { ready <- addr })
	}()
	select {
	case s.addr = <-ready:
		s.url = "http://" + s.addr
		t.Cleanup(func() {
			s.cancel()
			select {
			case <-s.done:
			case <-time.After(30 * time.Second):
				t.Errorf("Serve did not return within 30s of cancel")
			}
		})
		return s, nil
	case err := <-s.done:
		cancel()
		if err == nil {
			err = errors.New("Serve returned nil before it was ready")
		}
		return s, err
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("Serve not ready after 60s\nstderr:\n%s", s.stderr)
		return nil, nil
	}
}

// stop cancels the server's context (what SIGTERM does in main) and returns Serve's result.
func (s *server) stop() error {
	s.t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // keep it for the cleanup
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatalf("Serve did not return within 30s of cancel\nstderr:\n%s", s.stderr)
		return nil
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call makes one JSON request and decodes a JSON answer into out (when non-nil).
func (s *server) call(method, path, bearer string, body, out any) int {
	s.t.Helper()
	code, err := testenv.DoJSON(httpClient, method, s.url+path, bearer, body, out)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code
}

// login returns the JWT for username/password, or "" with the status when refused.
func (s *server) login(username, password string) (string, int) {
	s.t.Helper()
	var res app.LoginResult
	code := s.call("POST", "/v1/auth/login", "", map[string]string{"username": username, "password": password}, &res)
	return res.Token, code
}

// me returns the status of GET /v1/auth/me with bearer and the username it names.
func (s *server) me(bearer string) (int, string) {
	s.t.Helper()
	var u app.UserView
	code := s.call("GET", "/v1/auth/me", bearer, nil, &u)
	return code, u.Username
}

var printedPassword = regexp.MustCompile(`Administrator created: username "([^"]+)" password "([^"]+)"`)

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServeFirstStartAndRestart: with nothing configured the first start creates the data dir
// (0700), the two secrets (0600) and the admin, printing its random password once on stdout;
// a restart keeps the secrets, prints nothing, and the old password and JWT still work.
func TestServeFirstStartAndRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	env := map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"}

	s1 := startServe(t, env)
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("data dir mode %o, want 700", m)
	}
	secrets := map[string]string{}
	for _, name := range []string{"jwt_secret", "token_hash_key", "cloud-cli-proxy.db"} {
		if m := fileMode(t, filepath.Join(dir, name)); m != 0o600 {
			t.Errorf("%s mode %o, want 600", name, m)
		}
	}
	for _, name := range []string{"jwt_secret", "token_hash_key"} {
		secrets[name] = readFile(t, filepath.Join(dir, name))
		if len(strings.TrimSpace(secrets[name])) < 32 {
			t.Errorf("%s holds %q, want 32+ characters", name, secrets[name])
		}
	}
	if secrets["jwt_secret"] == secrets["token_hash_key"] {
		t.Error("jwt_secret and token_hash_key are the same")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in the data dir", e.Name())
		}
	}

	out := s1.stdout.String()
	m := printedPassword.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("stdout should show the admin password exactly once, got:\n%s", out)
	}
	user, pw := m[0][1], m[0][2]
	if user != "admin" || len(pw) < 16 {
		t.Fatalf("printed username %q password %q", user, pw)
	}
	if strings.Count(out, pw) != 1 {
		t.Errorf("password appears %d times on stdout", strings.Count(out, pw))
	}
	if strings.Contains(s1.stderr.String(), pw) {
		t.Error("the admin password leaked into the log (stderr)")
	}
	jwt1, code := s1.login("admin", pw)
	if code != 200 || jwt1 == "" {
		t.Fatalf("login with the printed password: %d", code)
	}
	if code, name := s1.me(jwt1); code != 200 || name != "admin" {
		t.Fatalf("GET /v1/auth/me: %d %q", code, name)
	}
	if err := s1.stop(); err != nil {
		t.Fatalf("first Serve returned %v", err)
	}

	// Second start on the same dir. ADMIN_PASSWORD only applies to the first start. (The
	// low BCRYPT_COST only speeds up start-up under -race, where cost 10 takes seconds; the
	// stored hash keeps its cost.)
	env2 := map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "ADMIN_PASSWORD": "a-different-password", "BCRYPT_COST": "4"}
	s2 := startServe(t, env2)
	if out := s2.stdout.String(); out != "" {
		t.Errorf("second start printed to stdout:\n%s", out)
	}
	for name, before := range secrets {
		if after := readFile(t, filepath.Join(dir, name)); after != before {
			t.Errorf("%s changed on restart", name)
		}
	}
	if code, name := s2.me(jwt1); code != 200 || name != "admin" {
		t.Errorf("JWT from the first run: %d %q, want 200 admin (secret kept)", code, name)
	}
	// The old password still works, so the second start's ADMIN_PASSWORD did not replace it.
	if _, code := s2.login("admin", pw); code != 200 {
		t.Errorf("login with the first run's password: %d, want 200", code)
	}
	if err := s2.stop(); err != nil {
		t.Fatalf("second Serve returned %v", err)
	}
}

// TestServeConfiguredSecrets: ADMIN_PASSWORD is not printed, ADMIN_JWT_SECRET is not written
// to disk, and changing ADMIN_JWT_SECRET ends the sessions signed with the old one.
func TestServeConfiguredSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{
		"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "BCRYPT_COST": "4",
		"ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "configured-password",
		"ADMIN_JWT_SECRET": strings.Repeat("k", 40),
	}
	s1 := startServe(t, env)
	if out := s1.stdout.String(); out != "" {
		t.Errorf("stdout with ADMIN_PASSWORD set:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "jwt_secret")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("jwt_secret written although ADMIN_JWT_SECRET is set (stat: %v)", err)
	}
	if m := fileMode(t, filepath.Join(dir, "token_hash_key")); m != 0o600 {
		t.Errorf("token_hash_key mode %o", m)
	}
	jwt, code := s1.login("root", "configured-password")
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	if err := s1.stop(); err != nil {
		t.Fatal(err)
	}

	env["ADMIN_JWT_SECRET"] = strings.Repeat("n", 40)
	s2 := startServe(t, env)
	if code, _ := s2.me(jwt); code != 401 {
		t.Errorf("JWT signed with the old ADMIN_JWT_SECRET: %d, want 401", code)
	}
	if _, code := s2.login("root", "configured-password"); code != 200 {
		t.Errorf("login after the secret change: %d", code)
	}
}

// TestServeDrainsOnCancel: cancelling the context (SIGTERM in main) while a request is in
// flight stops new connections, lets that request finish (its database write included),
// returns nil, and leaves a database that opens at once.
func TestServeDrainsOnCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServe(t, map[string]string{
		"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "BCRYPT_COST": "4", "ADMIN_PASSWORD": "drain-password",
	})

	// A login whose body is held back: with Expect: 100-continue the server answers
	// "100 Continue" only once the handler reads the body, so the request is provably in
	// the handler before the context is cancelled.
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	body := `{"username":"admin","password":"drain-password"}`
	fmt.Fprintf(conn, "POST /v1/auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", s.addr, len(body))
	br := bufio.NewReader(conn)
	cont, err := http.ReadResponse(br, nil)
	if err != nil || cont.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue, got %v %v", cont, err)
	}

	s.cancel()
	// Shutdown closes the listener first: new connections are refused while the request
	// above is still being served.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts connections 10s after cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-s.done:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}

	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the in-flight request did not complete: %v", err)
	}
	var res app.LoginResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 || res.Token == "" {
		t.Fatalf("drained login: status %d, token %q, err %v", resp.StatusCode, res.Token, err)
	}
	resp.Body.Close()

	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("Serve returned %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the last request finished")
	}
	if !strings.Contains(s.stderr.String(), "closing the database") {
		t.Errorf("no shutdown log line:\n%s", s.stderr)
	}

	// The lock is released and the file is whole: open at once, read back what the drained
	// request wrote.
	db, err := storage.Open(filepath.Join(dir, "cloud-cli-proxy.db"), storage.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("reopening the database right after Serve returned: %v", err)
	}
	defer db.Close()
	var logins int
	err = db.View(context.Background(), func(tx app.Tx) error {
		if _, err := tx.GetUserByName("admin"); err != nil {
			return err
		}
		page, err := tx.QueryEvents(app.EventQuery{Type: "auth.login"})
		for _, e := range page.Events {
			if e.Result == app.ResultSuccess && e.ActorName == "admin" {
				logins++
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if logins != 1 {
		t.Errorf("%d successful login events stored, want 1 (the drained request's)", logins)
	}
}

// TestServeSecondInstanceIsLocked: a second Serve on a data dir in use fails quickly with the
// lock error, creating and printing nothing, and the first keeps serving.
func TestServeSecondInstanceIsLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "BCRYPT_COST": "4"}
	first := startServe(t, env)
	pw := printedPassword.FindStringSubmatch(first.stdout.String())
	if pw == nil {
		t.Fatalf("first start printed no password:\n%s", first.stdout)
	}

	start := time.Now()
	second, err := tryServe(t, env)
	took := time.Since(start)
	if err == nil {
		t.Fatal("a second Serve on the same DATA_DIR started")
	}
	if !errors.Is(err, storage.ErrLocked) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("second Serve: %v, want storage.ErrLocked", err)
	}
	if took > 15*time.Second {
		t.Errorf("second Serve took %s to give up", took)
	}
	if out := second.stdout.String(); out != "" {
		t.Errorf("second Serve printed:\n%s", out)
	}
	if _, code := first.login("admin", pw[2]); code != 200 {
		t.Errorf("first server after the failed second start: login %d", code)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestServeStartFailures: a bad key and a busy port stop start-up with an error naming the
// key, before anything is created.
func TestServeStartFailures(t *testing.T) {
	t.Parallel()
	t.Run("bad config touches nothing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		_, err := tryServe(t, map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "LOG_FORMAT": "xml"})
		if err == nil || !strings.Contains(err.Error(), "LOG_FORMAT") {
			t.Fatalf("err %v, want one naming LOG_FORMAT", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data dir created by a start with a bad config (stat: %v)", err)
		}
	})
	t.Run("busy port creates no admin", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		dir := t.TempDir()
		env := map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0", "HTTP_ADDR": busy.Addr().String(), "BCRYPT_COST": "4"}
		s, err := tryServe(t, env)
		if err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
			t.Fatalf("err %v, want one naming HTTP_ADDR", err)
		}
		if out := s.stdout.String(); out != "" {
			t.Errorf("a start that failed to bind printed:\n%s", out)
		}
		// The failed start released the database and created no admin: the next start
		// creates it and shows its password.
		env["HTTP_ADDR"] = "127.0.0.1:0"
		s2 := startServe(t, env)
		if printedPassword.FindStringSubmatch(s2.stdout.String()) == nil {
			t.Errorf("the start after a failed one printed no password:\n%s", s2.stdout)
		}
	})
}

func TestMainCommands(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cmd.Main(context.Background(), args, envOf(nil), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, _ := run("config")
	if code != 0 {
		t.Errorf("config: exit %d", code)
	}
	for _, k := range cmd.Keys() {
		if !strings.Contains(out, "`"+k.Name+"`") {
			t.Errorf("config table lacks %s", k.Name)
		}
	}
	if code, _, errOut := run("serve", "-h"); code != 0 || !strings.Contains(errOut, "-http-addr") {
		t.Errorf("serve -h: exit %d, usage %q", code, errOut)
	}
	if code, _, errOut := run("frobnicate"); code != 1 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run("serve", "--log-format=xml"); code != 1 || !strings.Contains(errOut, "LOG_FORMAT") {
		t.Errorf("bad flag value: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run("backup"); code != 1 || !strings.Contains(errOut, "--out") {
		t.Errorf("backup without --out: exit %d, %q", code, errOut)
	}
}
