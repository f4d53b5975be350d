package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// benchImage is the image of the benchmark's host: $CCP_TEST_IMAGE or the offline test image.
func benchImage() string {
	if v := os.Getenv("CCP_TEST_IMAGE"); v != "" {
		return v
	}
	return "cloud-cli-proxy/managed-test:latest"
}

// runChild is the gateway process: a whole service on a scratch data dir with one user, one
// host and the gateway, serving until told to quit on stdin (or stdin closes). It prints
// "READY {json}" on stdout, answers "mem" with a JSON line, and removes its host on exit.
func runChild() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	maxSess, _ := strconv.Atoi(os.Getenv("CCP_SSHBENCH_MAXSESS"))
	if path := os.Getenv("CCP_SSHBENCH_CPUPROFILE"); path != "" { // profile the gateway process
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	rt, err := runtime.NewDocker(ctx, runtime.Config{})
	if err != nil {
		return err
	}
	defer rt.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	err = rt.Ping(pctx)
	pcancel()
	if err != nil {
		return fmt.Errorf("docker engine unreachable: %w", err)
	}
	dir, err := os.MkdirTemp("", "ccp-sshbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := storage.Open(filepath.Join(dir, "bench.db"), storage.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := app.New(app.Config{
		MaxSessionsPerUser: maxSess,
		JWTSecret:          []byte(strings.Repeat("b", 40)), ManagedImage: benchImage(), StopTimeout: 2 * time.Second,
		ReconcileInterval: -1,
	}, app.Deps{Store: db, Runtime: rt, Logger: logger})
	if err != nil {
		return err
	}
	wait, err := svc.Start(ctx)
	if err != nil {
		return err
	}
	defer func() { cancel(); wait() }()

	// Set up through the REST API, in process.
	h := api.New(svc, api.Config{}, logger).Handler()
	rest := func(method, path, token string, body any, want int, out any) error {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req := httptest.NewRequest(method, path, rd)
		req.RemoteAddr = "127.0.0.1:1"
		if rd != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			return fmt.Errorf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
		}
		if out != nil {
			return json.Unmarshal(rec.Body.Bytes(), out)
		}
		return nil
	}
	if _, err := svc.EnsureAdmin(ctx, "admin", "bench-admin-password"); err != nil {
		return err
	}
	var tok struct{ Token string }
	if err := rest("POST", "/v1/auth/login", "", map[string]string{"username": "admin", "password": "bench-admin-password"}, 200, &tok); err != nil {
		return err
	}
	var u struct{ ID string }
	if err := rest("POST", "/v1/admin/users", tok.Token, map[string]string{"username": "bench", "password": "bench-password-1", "role": "user"}, 201, &u); err != nil {
		return err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	block, err := gossh.MarshalPrivateKey(priv, "ssh bench")
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	if err := rest("POST", "/v1/admin/users/"+u.ID+"/ssh-keys", tok.Token, map[string]string{
		"public_key": strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))), "name": "bench",
	}, 201, nil); err != nil {
		return err
	}
	var created struct {
		Host struct{ ID string }
		Task struct{ ID string }
	}
	if err := rest("POST", "/v1/admin/hosts", tok.Token, map[string]any{"user_id": u.ID, "memory_mb": 4096, "cpu": 2, "pids": 4096}, 201, &created); err != nil {
		return err
	}
	var removeOnce sync.Once
	removeHost := func() {
		removeOnce.Do(func() {
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer rcancel()
			if err := rt.Remove(rctx, created.Host.ID, false); err != nil {
				fmt.Fprintln(os.Stderr, "bench child: removing the host:", err)
			}
		})
	}
	defer removeHost()
	tctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	task, err := svc.WaitTask(tctx, created.Task.ID)
	tcancel()
	if err != nil {
		return err
	}
	if task.State != app.TaskSucceeded {
		return fmt.Errorf("host creation %s: %+v", task.State, task.Error)
	}
	rh, err := rt.Inspect(ctx, created.Host.ID)
	if err != nil {
		return err
	}

	hostKey, _, err := sshd.LoadOrCreateHostKey(dir)
	if err != nil {
		return err
	}
	gw, err := sshd.NewGateway(svc, sshd.GatewayConfig{HostSigner: hostKey, Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = gw.Serve(ln) }()
	// On the way out: remove the host first (it ends every process at once, sparing the
	// gateway a hang-up per session), then drop the connections (defers run last first).
	defer func() { _ = gw.Close() }()
	defer removeHost()

	info, _ := json.Marshal(childInfo{Addr: ln.Addr().String(), User: "bench", KeyFile: keyFile,
		HostID: created.Host.ID, ContainerID: rh.ContainerID, Pid: os.Getpid()})
	fmt.Printf("READY %s\n", info)

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "mem":
			b, _ := json.Marshal(readMem())
			fmt.Printf("%s\n", b)
		case "quit":
			return nil
		}
	}
	return nil
}

// readMem collects garbage and reads this process's memory.
func readMem() memInfo {
	goruntime.GC()
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	m := memInfo{HeapAlloc: ms.HeapAlloc, StackInuse: ms.StackInuse, Goroutines: goruntime.NumGoroutine()}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					kb, _ := strconv.ParseUint(f[0], 10, 64)
					m.RSS = kb * 1024
				}
			}
		}
	}
	return m
}
