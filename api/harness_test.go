package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// env is a whole server on a real bbolt file, behind httptest.
type env struct {
	t       *testing.T
	srv     *httptest.Server
	svc     *app.Service
	db      *storage.DB
	api     *api.Server
	clock   *testenv.Clock
	admin   string // admin JWT
	adminID string
}

type envOption func(*app.Config, *app.Deps, *api.Config)

func withRateLimit(n int) envOption {
	return func(_ *app.Config, _ *app.Deps, c *api.Config) { c.RateLimitPerMinute = n }
}

func withRuntime(rt app.Runtime) envOption {
	return func(_ *app.Config, d *app.Deps, _ *api.Config) { d.Runtime = rt }
}

func withConfig(fn func(*app.Config)) envOption {
	return func(c *app.Config, _ *app.Deps, _ *api.Config) { fn(c) }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvOn(t, nil, opts...)
}

// newEnvOn is newEnv with the service's store wrapped by wrap (nil: the bbolt store itself),
// for tests that watch what reaches the store.
func newEnvOn(t *testing.T, wrap func(app.Store) app.Store, opts ...envOption) *env {
	t.Helper()
	acfg := api.Config{}
	teOpts := []testenv.Option{testenv.WithConfig(func(c *app.Config) {
		c.TokenHashKey, c.ReconcileInterval = []byte("token-hash-key-for-tests"), -1
	}), func(s *testenv.Setup) {
		for _, o := range opts {
			o(&s.Config, &s.Deps, &acfg)
		}
	}}
	if wrap != nil {
		teOpts = append(teOpts, testenv.WithStore(wrap))
	}
	te := testenv.NewService(t, teOpts...)
	svc, db, clk := te.Service, te.DB, te.Clock
	ctx := te.Start()
	a := api.New(svc, acfg, te.Logger)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, svc: svc, db: db, api: a, clock: clk}
	if _, err := svc.EnsureAdmin(ctx, "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	e.admin = e.login("admin", "admin-password")
	var me struct{ ID string }
	e.do("GET", "/v1/auth/me", e.admin, nil, 200, &me)
	e.adminID = me.ID
	return e
}

// resp is a decoded response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// errCode returns error.code of an error body.
func (r resp) errCode() string {
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &b)
	return b.Error.Code
}

// raw sends a request; body may be nil, a string (sent verbatim) or a value (JSON-encoded).
func (e *env) raw(method, path, bearer string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
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
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// do sends a request, checks the status and decodes the body into out (when not nil).
func (e *env) do(method, path, bearer string, body any, want int, out any) resp {
	e.t.Helper()
	r := e.raw(method, path, bearer, body)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, want, r.Body)
	}
	if out != nil {
		r.json(e.t, out)
	}
	return r
}

func (e *env) login(username, password string) string {
	e.t.Helper()
	var out struct{ Token string }
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": username, "password": password}, 200, &out)
	return out.Token
}

// user creates an account with a role and returns its id and a JWT.
func (e *env) user(name string, role app.Role) (id, jwt string) {
	e.t.Helper()
	var u struct{ ID string }
	e.do("POST", "/v1/admin/users", e.admin, map[string]any{"username": name, "password": "password-" + name, "role": role}, 201, &u)
	return u.ID, e.login(name, "password-"+name)
}

// host creates a host for a user and returns its id.
func (e *env) host(userID string) string {
	e.t.Helper()
	var out struct {
		Host struct{ ID string }
	}
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": userID}, 201, &out)
	return out.Host.ID
}

// waitIdle polls until the host has no active task.
func (e *env) waitIdle(hostID string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var h struct {
			ActiveTaskID string `json:"active_task_id"`
		}
		r := e.raw("GET", "/v1/admin/hosts/"+hostID, e.admin, nil)
		if r.Status == 404 {
			return
		}
		r.json(e.t, &h)
		if h.ActiveTaskID == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("host %s still busy after 30s", hostID)
}
