package sshd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
)

// The gateway tests run a whole service (bbolt + the real Docker engine + the offline test
// image) behind the REST API, plus one or more gateways on it.

func gwTestImage() string {
	if v := os.Getenv("CCP_TEST_IMAGE"); v != "" {
		return v
	}
	return "cloud-cli-proxy/managed-test:latest"
}

// gwMissing skips the test naming what is missing, or fails it when CI=true.
func gwMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// gwEngine returns the Docker runtime, or skips (fails in CI) without engine or image.
func gwEngine(t *testing.T) *runtime.Docker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rt, err := runtime.NewDocker(ctx, runtime.Config{})
	if err != nil {
		gwMissing(t, "docker client: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	if err := rt.Ping(ctx); err != nil {
		gwMissing(t, "docker engine unreachable: %v", err)
	}
	// A first versioned call, alone: the docker client negotiates the API version on its
	// first request, and two racing first requests race inside the client (the service's
	// task workers start concurrently).
	if _, err := rt.Inspect(ctx, "gateway-test-warm-up"); err != nil {
		gwMissing(t, "docker engine: %v", err)
	}
	if err := gwImagePresent(ctx, gwTestImage()); err != nil {
		gwMissing(t, "test image %s missing (bash deploy/testimage/build.sh): %v", gwTestImage(), err)
	}
	if os.Geteuid() != 0 {
		gwMissing(t, "the gateway's port forwarding needs root (setns into the container's network namespace)")
	}
	return rt
}

func gwImagePresent(ctx context.Context, image string) error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.ImageInspect(ctx, image)
	return err
}

// gwEnv is a service with the REST API and a gateway.
type gwEnv struct {
	t       *testing.T
	svc     *app.Service
	rt      *runtime.Docker
	srv     *httptest.Server
	admin   string
	dataDir string
	addr    string // the main gateway's address
}

func newGwEnv(t *testing.T, cfgs ...func(*app.Config)) *gwEnv {
	t.Helper()
	rt := gwEngine(t)
	dataDir := t.TempDir()
	logger := testenv.DiscardLogger()
	if os.Getenv("GW_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	te := testenv.NewService(t, testenv.WithDBPath(filepath.Join(dataDir, "test.db")), testenv.WithRuntime(rt),
		testenv.WithDeps(func(d *app.Deps) { d.Clock, d.Logger = nil, logger }), // the real clock
		testenv.WithConfig(func(c *app.Config) {
			c.TokenHashKey, c.ReconcileInterval = []byte("token-hash-key-for-tests"), -1
			c.ManagedImage, c.StopTimeout = gwTestImage(), 2*time.Second
			for _, f := range cfgs {
				f(c)
			}
		}))
	svc := te.Service
	ctx := te.Start()
	srv := httptest.NewServer(api.New(svc, api.Config{}, logger).Handler())
	t.Cleanup(srv.Close)
	e := &gwEnv{t: t, svc: svc, rt: rt, srv: srv, dataDir: dataDir}
	if _, err := svc.EnsureAdmin(ctx, "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": "admin", "password": "admin-password"}, 200, &tok)
	e.admin = tok.Token
	e.addr = e.gateway(sshd.GatewayConfig{Logger: logger})
	return e
}

// gateway starts a gateway on the env's data dir host key and returns its address.
func (e *gwEnv) gateway(cfg sshd.GatewayConfig) string {
	e.t.Helper()
	_, addr := e.startGateway(cfg)
	return addr
}

// startGateway starts a gateway and returns it with its address.
func (e *gwEnv) startGateway(cfg sshd.GatewayConfig) (*sshd.Gateway, string) {
	e.t.Helper()
	signer, _, err := sshd.LoadOrCreateHostKey(e.dataDir)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.HostSigner = signer
	if cfg.Logger == nil {
		cfg.Logger = testenv.DiscardLogger()
	}
	gw, err := sshd.NewGateway(e.svc, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ln) }()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		if err := <-done; !errors.Is(err, sshd.ErrGatewayClosed) {
			e.t.Errorf("Serve returned %v", err)
		}
	})
	return gw, ln.Addr().String()
}

// do sends a REST request, checks the status and decodes the answer into out.
func (e *gwEnv) do(method, path, bearer string, body any, want int, out any) []byte {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("decoding %s: %v", b, err)
		}
	}
	return b
}

// user creates an account (password "password-NAME") and returns its id.
func (e *gwEnv) user(name string) string {
	e.t.Helper()
	var u struct{ ID string }
	e.do("POST", "/v1/admin/users", e.admin, map[string]any{"username": name, "password": "password-" + name, "role": "user"}, 201, &u)
	return u.ID
}

type gwHost struct{ ID, ShortID, Task string }

// host creates a host for a user (its container is created and started by a task).
func (e *gwEnv) host(userID string) gwHost {
	e.t.Helper()
	var out struct {
		Host struct {
			ID      string
			ShortID string `json:"short_id"`
		}
		Task struct{ ID string }
	}
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": userID, "memory_mb": 512, "cpu": 1, "pids": 512}, 201, &out)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.rt.Remove(ctx, out.Host.ID, false)
	})
	return gwHost{ID: out.Host.ID, ShortID: out.Host.ShortID, Task: out.Task.ID}
}

func (e *gwEnv) mustSucceed(taskID string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	task, err := e.svc.WaitTask(ctx, taskID)
	if err != nil {
		e.t.Fatalf("task %s: %v", taskID, err)
	}
	if task.State != app.TaskSucceeded {
		e.t.Fatalf("task %s (%s) %s: %+v", taskID, task.Kind, task.State, task.Error)
	}
}

// action runs a host action through the API and waits for its task.
func (e *gwEnv) action(hostID, action string) []byte {
	e.t.Helper()
	var out struct {
		Task struct{ ID string }
	}
	b := e.do("POST", "/v1/admin/hosts/"+hostID+"/"+action, e.admin, nil, 202, &out)
	e.mustSucceed(out.Task.ID)
	return b
}

// gwKey makes an ed25519 key pair: the signer, its authorized_keys line and its private
// key in OpenSSH PEM form.
func gwKey(t *testing.T) (gossh.Signer, string, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "gateway test")
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))), pem.EncodeToMemory(block)
}

// gwDial connects and authenticates from a chosen loopback source address (the service
// throttles failures per IP, so tests that fail on purpose use their own address).
func gwDial(addr, srcIP, user string, auth ...gossh.AuthMethod) (*gossh.Client, gossh.PublicKey, error) {
	var hostKey gossh.PublicKey
	cfg := &gossh.ClientConfig{
		User: user, Auth: auth, Timeout: 20 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error { hostKey = key; return nil },
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if srcIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(srcIP)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c, chans, reqs, err := gossh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, hostKey, err
	}
	return gossh.NewClient(c, chans, reqs), hostKey, nil
}

// gwRun runs cmd in a new session and returns stdout, stderr and the exit status
// (-1 with err when it did not exit normally).
func gwRun(c *gossh.Client, cmd string, stdin io.Reader) (stdout, stderr string, code int, err error) {
	s, err := c.NewSession()
	if err != nil {
		return "", "", -1, err
	}
	defer s.Close()
	var o, e bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &o, &e, stdin
	err = s.Run(cmd)
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return o.String(), e.String(), 0, nil
	case errors.As(err, &ee):
		return o.String(), e.String(), ee.ExitStatus(), nil
	default:
		return o.String(), e.String(), -1, err
	}
}

// gwWatch accumulates a stream so a test can wait for text in it.
type gwWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	err  error
	more chan struct{}
}

func gwWatchStream(r io.Reader) *gwWatch {
	w := &gwWatch{more: make(chan struct{}, 1)}
	go func() {
		b := make([]byte, 8192)
		for {
			n, err := r.Read(b)
			w.mu.Lock()
			w.buf.Write(b[:n])
			w.err = err
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return w
}

func (w *gwWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the output contains want; poke (if not nil) is called on every
// tick of 250 ms while waiting (to re-send a command whose effect is asynchronous).
func (w *gwWatch) waitFor(t *testing.T, want string, limit time.Duration, poke func()) {
	t.Helper()
	deadline := time.After(limit)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		got, err := w.buf.String(), w.err
		w.mu.Unlock()
		if strings.Contains(got, want) {
			return
		}
		if err != nil {
			t.Fatalf("stream ended (%v) before %q; got %q", err, want, got)
		}
		select {
		case <-w.more:
		case <-tick.C:
			if poke != nil {
				poke()
			}
		case <-deadline:
			t.Fatalf("no %q within %s; got %q", want, limit, got)
		}
	}
}

// gwOpenSSH finds an OpenSSH client program (ssh, scp) and writes key to a file for it:
// it returns the program's path and the key file's.
func gwOpenSSH(t *testing.T, program string, key []byte) (bin, keyFile string) {
	t.Helper()
	bin, err := exec.LookPath(program)
	if err != nil {
		gwMissing(t, "OpenSSH %s not installed (apt-get install openssh-client): %v", program, err)
	}
	keyFile = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, keyFile
}
