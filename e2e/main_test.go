package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// buildDir holds the binary built for this test run.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ccp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the real binary (`go build -o $TMP/ccp .` at the repository root) once per
// test run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			buildErr = err
			return
		}
		p := filepath.Join(buildDir, "ccp")
		c := exec.Command("go", "build", "-o", p, ".")
		c.Dir = root
		out, err := c.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = p
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is one running server process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, set before exited is closed
}

// freeAddr returns 127.0.0.1:<a port that was free a moment ago>.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serverEnv is the process environment minus every configuration key (so the developer's
// own settings cannot leak in), plus env.
func serverEnv(env map[string]string) []string {
	drop := map[string]bool{"ENV_FILE": true}
	for _, k := range cmd.Keys() {
		drop[k.Name] = true
	}
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// start runs the binary's serve command with env (HTTP_ADDR is chosen here) and waits until
// GET /healthz answers 200. The process is killed at the end of the test if still running.
func start(t *testing.T, env map[string]string) *proc {
	t.Helper()
	addr := freeAddr(t)
	full := map[string]string{"HTTP_ADDR": addr, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		full[k] = v
	}
	p := &proc{t: t, url: "http://" + addr, stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary(t), "serve")
	p.cmd.Env = serverEnv(full)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("server %s stderr (tail):\n%s", p.url, tail(p.stderr.String(), 40))
		}
	})
	p.waitReady(20 * time.Second)
	return p
}

// waitReady polls GET /healthz until it answers 200, the process exits, or the deadline.
func (p *proc) waitReady(limit time.Duration) {
	p.t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := c.Get(p.url + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.exited:
			p.t.Fatalf("server exited before it was ready: %v\nstderr:\n%s", p.err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("server not ready after %s (last: %v)\nstderr:\n%s", limit, err, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *proc) terminate(limit time.Duration) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			p.t.Fatalf("server exited with %v after SIGTERM\nstderr:\n%s", p.err, p.stderr)
		}
	case <-time.After(limit):
		p.t.Fatalf("server still running %s after SIGTERM", limit)
	}
}

// do makes one JSON request; out receives a 2xx answer.
func (p *proc) do(c *http.Client, method, path, bearer string, body, out any) (int, error) {
	return testenv.DoJSON(c, method, p.url+path, bearer, body, out)
}

// login returns an admin JWT.
func (p *proc) login(username, password string) string {
	p.t.Helper()
	var res struct {
		Token string `json:"token"`
	}
	code, err := p.do(http.DefaultClient, "POST", "/v1/auth/login", "", map[string]string{"username": username, "password": password}, &res)
	if err != nil || code != 200 || res.Token == "" {
		p.t.Fatalf("login as %s: %d %v", username, code, err)
	}
	return res.Token
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
