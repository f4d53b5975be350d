package api_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
)

// The authorization matrix walks every route the REST door registers against every kind of
// caller and checks the status (and, for every refusal, the JSON error body). A route that
// the matrix has no expectation for fails the test: new routes must be added to matrixFixture.specs.

const (
	mxPublic     = "public"
	mxAuth       = "auth"
	mxAdminRead  = "admin_read"
	mxAdminWrite = "admin_write"
)

// matrixFixture holds the accounts and resources the rows address.
type matrixFixture struct {
	e *env
	n int

	userID, userJWT     string // role user; owns host A
	otherID, otherJWT   string // role user; owns nothing
	viewerID, viewerJWT string
	loggedOutLive       string // a second, still valid JWT of the logged-out account
	spareID             string // owns the fresh hosts rows create
	hostA, shortA       string
	taskA               string // a succeeded task of host A
	egress              string // shared egress IP (GET, PUT, test)
	// afterConsume runs after a row that consumed its credential: a password change revokes
	// every access token of the account, so token callers get new ones.
	afterConsume []func()
}

const (
	mxUser, mxOther, mxViewer = "mx-user", "mx-other", "mx-viewer"
	mxDisabled, mxLoggedOut   = "mx-disabled", "mx-loggedout"
	mxSpare, mxBoot           = "mx-spare", "mx-boot"
	mxAdminPassword           = "admin-password"
)

func mxPW(name string) string { return "password-" + name }

func (f *matrixFixture) uniq(prefix string) string {
	f.n++
	return fmt.Sprintf("%s-%d", prefix, f.n)
}

// relogin replaces the shared JWTs (after a row killed one: refresh, logout, password change).
func (f *matrixFixture) relogin() {
	f.userJWT = f.e.login(mxUser, mxPW(mxUser))
	f.otherJWT = f.e.login(mxOther, mxPW(mxOther))
	f.viewerJWT = f.e.login(mxViewer, mxPW(mxViewer))
	f.e.admin = f.e.login("admin", mxAdminPassword)
}

func (f *matrixFixture) newUser() string {
	var u struct{ ID string }
	name := f.uniq("mx-fresh")
	f.e.do("POST", "/v1/admin/users", f.e.admin, map[string]any{"username": name, "password": mxPW(name)}, 201, &u)
	return u.ID
}

// newHost creates an idle host (its create task has finished).
func (f *matrixFixture) newHost() string {
	id := f.e.host(f.spareID)
	f.e.waitIdle(id)
	return id
}

func (f *matrixFixture) egressBody() map[string]any {
	f.n++
	return map[string]any{
		"label": fmt.Sprintf("mx-egress-%d", f.n), "ip_address": fmt.Sprintf("203.0.113.%d", f.n%250+1),
		"tunnel_type":  "proxy",
		"proxy_config": map[string]any{"type": "socks", "server": "proxy.example.com", "server_port": 1080},
	}
}

func (f *matrixFixture) newEgress() string {
	var out struct{ ID string }
	f.e.do("POST", "/v1/admin/egress-ips", f.e.admin, f.egressBody(), 201, &out)
	return out.ID
}

func (f *matrixFixture) newBinding() string {
	var out struct{ ID string }
	f.e.do("POST", "/v1/admin/bindings", f.e.admin, map[string]any{"host_id": f.e.host(f.spareID), "egress_ip_id": f.egress}, 201, &out)
	return out.ID
}

func (f *matrixFixture) pubKey() string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.e.t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		f.e.t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " matrix"
}

// newOwnKey adds a key to the account jwt belongs to.
func (f *matrixFixture) newOwnKey(jwt string) string {
	var out struct{ ID string }
	f.e.do("POST", "/v1/user/ssh-keys", jwt, map[string]any{"public_key": f.pubKey()}, 201, &out)
	return out.ID
}

func (f *matrixFixture) newAdminKey(userID string) string {
	var out struct{ ID string }
	f.e.do("POST", "/v1/admin/users/"+userID+"/ssh-keys", f.e.admin, map[string]any{"public_key": f.pubKey()}, 201, &out)
	return out.ID
}

// newToken creates an access token for the account jwt belongs to.
func (f *matrixFixture) newToken(jwt string, write bool) (id, name, value string) {
	var out struct{ ID, Name, Token string }
	name = f.uniq("mx-tok")
	f.e.do("POST", "/v1/tokens", jwt, map[string]any{"name": name, "write": write}, 201, &out)
	return out.ID, out.Name, out.Token
}

// mxCaller is one kind of client.
type mxCaller struct {
	name     string
	valid    bool   // the credential authenticates
	role     string // role of the account it authenticates as
	userID   string
	token    bool // an access token (not a login session)
	write    bool // the credential may write (false: read-only token, viewer token)
	password string
	bearer   func() string // the credential sent ("" = no Authorization header)
	owner    func() string // a JWT of the account, to create the caller's own resources
	fresh    func() string // a single-use credential for rows that consume it; nil: bearer
}

// mxSpec is what the matrix expects of one route.
type mxSpec struct {
	access   string
	ok       int    // status of an authorized caller
	code     string // error code when ok is not 2xx
	write    bool   // a self-service mutation: credentials that may not write get insufficient_scope
	hostA    bool   // addresses host A through the portal: only its owner reaches it, others get 404
	taskA    bool   // a task of host A through the portal: its owner, admins and viewers
	session  bool   // only for login sessions: tokens get 400 not_a_session
	consumes bool   // kills the credential it is sent with (or all JWTs of its account)
	req      func(c *mxCaller) (path string, body any)
}

func mxStatic(path string) func(*mxCaller) (string, any) {
	return func(*mxCaller) (string, any) { return path, nil }
}

func (f *matrixFixture) specs() map[string]mxSpec {
	e := f.e
	m := map[string]mxSpec{}
	add := func(key string, s mxSpec) {
		if _, dup := m[key]; dup {
			panic("duplicate matrix mxSpec " + key)
		}
		m[key] = s
	}
	login := func(*mxCaller) (string, any) {
		return "", map[string]string{"username": mxUser, "password": mxPW(mxUser)}
	}
	at := func(path string, fn func(*mxCaller) (string, any)) func(*mxCaller) (string, any) {
		return func(c *mxCaller) (string, any) { _, b := fn(c); return path, b }
	}
	hostActionA := func(path string) func(*mxCaller) (string, any) {
		return func(*mxCaller) (string, any) {
			e.waitIdle(f.hostA)
			return strings.Replace(path, ":id", f.hostA, 1), nil
		}
	}
	freshUser := func(path string, body any) func(*mxCaller) (string, any) {
		return func(*mxCaller) (string, any) { return strings.Replace(path, ":id", f.newUser(), 1), body }
	}

	// Public.
	add("GET /healthz", mxSpec{access: mxPublic, ok: 200, req: mxStatic("/healthz")})
	add("GET /v1/openapi.json", mxSpec{access: mxPublic, ok: 200, req: mxStatic("/v1/openapi.json")})
	add("POST /v1/auth/login", mxSpec{access: mxPublic, ok: 200, req: at("/v1/auth/login", login)})
	add("POST /v1/admin/login", mxSpec{access: mxPublic, ok: 200, req: at("/v1/admin/login", login)})
	add("GET /v1/bootstrap/script", mxSpec{access: mxPublic, ok: 200, req: mxStatic("/v1/bootstrap/script")})
	add("POST /v1/bootstrap/sessions", mxSpec{access: mxPublic, ok: 202, req: func(*mxCaller) (string, any) {
		return "/v1/bootstrap/sessions", map[string]string{"username": mxBoot, "password": mxPW(mxBoot)}
	}})
	// A bootstrap task's status and handoff answer only its session's secret: no caller's
	// credential opens them, an admin's neither (bootstrap_test.go has the secret's rows).
	add("GET /v1/bootstrap/tasks/:id", mxSpec{access: mxPublic, ok: 401, code: "unauthenticated", req: func(*mxCaller) (string, any) {
		return "/v1/bootstrap/tasks/" + f.taskA, nil
	}})
	add("GET /v1/bootstrap/tasks/:id/handoff", mxSpec{access: mxPublic, ok: 401, code: "unauthenticated", req: func(*mxCaller) (string, any) {
		return "/v1/bootstrap/tasks/" + f.taskA + "/handoff", nil
	}})
	add("GET /entry/:shortId", mxSpec{access: mxPublic, ok: 200, req: func(*mxCaller) (string, any) { return "/entry/" + f.shortA, nil }})
	add("POST /v1/entry/:shortId/auth", mxSpec{access: mxPublic, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/entry/" + f.shortA + "/auth", map[string]string{"password": mxPW(mxUser)}
	}})

	// Sessions and the caller's own account.
	add("POST /v1/auth/refresh", mxSpec{access: mxAuth, ok: 200, session: true, consumes: true, req: mxStatic("/v1/auth/refresh")})
	add("POST /v1/auth/logout", mxSpec{access: mxAuth, ok: 204, session: true, consumes: true, req: mxStatic("/v1/auth/logout")})
	add("GET /v1/auth/me", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/v1/auth/me")})
	add("POST /v1/user/change-password", mxSpec{access: mxAuth, ok: 200, write: true, consumes: true, req: func(c *mxCaller) (string, any) {
		// The same password again: the change still bumps the account's version.
		return "/v1/user/change-password", map[string]string{"old_password": c.password, "new_password": c.password}
	}})

	// Portal.
	add("GET /v1/user/hosts", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/v1/user/hosts")})
	add("GET /v1/user/hosts/:id", mxSpec{access: mxAuth, ok: 200, hostA: true, req: func(*mxCaller) (string, any) {
		return "/v1/user/hosts/" + f.hostA, nil
	}})
	add("POST /v1/user/hosts/:id/rebuild", mxSpec{access: mxAuth, ok: 202, write: true, hostA: true, req: hostActionA("/v1/user/hosts/:id/rebuild")})
	add("GET /v1/user/tasks/:id", mxSpec{access: mxAuth, ok: 200, taskA: true, req: func(*mxCaller) (string, any) {
		return "/v1/user/tasks/" + f.taskA, nil
	}})
	add("GET /v1/user/ssh-keys", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/v1/user/ssh-keys")})
	add("POST /v1/user/ssh-keys", mxSpec{access: mxAuth, ok: 201, write: true, req: func(*mxCaller) (string, any) {
		return "/v1/user/ssh-keys", map[string]string{"public_key": f.pubKey(), "name": "laptop"}
	}})
	add("POST /v1/user/ssh-keys/generate", mxSpec{access: mxAuth, ok: 201, write: true, req: mxStatic("/v1/user/ssh-keys/generate")})
	add("DELETE /v1/user/ssh-keys/:keyID", mxSpec{access: mxAuth, ok: 204, write: true, req: func(c *mxCaller) (string, any) {
		return "/v1/user/ssh-keys/" + f.newOwnKey(c.owner()), nil
	}})
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"} {
		// A desktop gives keyboard and mouse control, so it needs a credential that may
		// write (viewers are read-only). Host A never ran (no engine here): 409.
		add(m+" /v1/user/hosts/:id/vnc/*path", mxSpec{access: mxAuth, ok: 409, code: "host_not_running", write: true, hostA: true, req: func(*mxCaller) (string, any) {
			return "/v1/user/hosts/" + f.hostA + "/vnc/vnc.html", nil
		}})
		add(m+" /v1/admin/hosts/:id/vnc/*path", mxSpec{access: mxAdminWrite, ok: 409, code: "host_not_running", req: func(*mxCaller) (string, any) {
			return "/v1/admin/hosts/" + f.hostA + "/vnc/vnc.html", nil
		}})
	}

	// Access tokens.
	add("POST /v1/tokens", mxSpec{access: mxAuth, ok: 201, write: true, req: func(*mxCaller) (string, any) {
		return "/v1/tokens", map[string]any{"name": f.uniq("mx-new"), "write": false, "expires_in_days": 7}
	}})
	add("GET /v1/tokens", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/v1/tokens")})
	add("GET /v1/tokens/:id", mxSpec{access: mxAuth, ok: 200, req: func(c *mxCaller) (string, any) {
		id, _, _ := f.newToken(c.owner(), false)
		return "/v1/tokens/" + id, nil
	}})
	add("PATCH /v1/tokens/:id", mxSpec{access: mxAuth, ok: 200, write: true, req: func(c *mxCaller) (string, any) {
		id, _, _ := f.newToken(c.owner(), false)
		return "/v1/tokens/" + id, map[string]any{"name": f.uniq("mx-renamed")}
	}})
	add("DELETE /v1/tokens/:id", mxSpec{access: mxAuth, ok: 204, write: true, req: func(c *mxCaller) (string, any) {
		id, _, _ := f.newToken(c.owner(), false)
		return "/v1/tokens/" + id, nil
	}})
	add("POST /v1/tokens/:id/regenerate", mxSpec{access: mxAuth, ok: 200, write: true, req: func(c *mxCaller) (string, any) {
		id, _, _ := f.newToken(c.owner(), false)
		return "/v1/tokens/" + id + "/regenerate", nil
	}})
	add("GET /v1/admin/tokens", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/tokens")})
	add("DELETE /v1/admin/tokens/:id", mxSpec{access: mxAdminWrite, ok: 204, req: func(*mxCaller) (string, any) {
		id, _, _ := f.newToken(f.userJWT, true)
		return "/v1/admin/tokens/" + id, nil
	}})
	add("POST /_/token", mxSpec{access: mxAuth, ok: 201, write: true, req: func(*mxCaller) (string, any) {
		exp := e.clock.Now().AddDate(0, 0, 7).UnixMilli()
		return "/_/token", map[string]any{"name": f.uniq("mx-compat"), "write": false, "expiration_date": exp}
	}})
	add("GET /_/token", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/_/token")})
	add("PUT /_/token", mxSpec{access: mxAuth, ok: 200, write: true, req: func(c *mxCaller) (string, any) {
		_, name, _ := f.newToken(c.owner(), false)
		return "/_/token", map[string]any{"name": name, "active": false}
	}})
	add("DELETE /_/token", mxSpec{access: mxAuth, ok: 204, write: true, req: func(c *mxCaller) (string, any) {
		_, name, _ := f.newToken(c.owner(), false)
		return "/_/token", map[string]any{"name": name}
	}})
	add("GET /_/token/value", mxSpec{access: mxAuth, ok: 410, code: "token_value_unavailable", req: func(c *mxCaller) (string, any) {
		_, name, _ := f.newToken(c.owner(), false)
		return "/_/token/value?name=" + url.QueryEscape(name), nil
	}})

	// Users.
	add("GET /v1/admin/users", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/users")})
	add("POST /v1/admin/users", mxSpec{access: mxAdminWrite, ok: 201, req: func(*mxCaller) (string, any) {
		name := f.uniq("mx-created")
		return "/v1/admin/users", map[string]any{"username": name, "password": mxPW(name), "role": "user"}
	}})
	add("GET /v1/admin/users/:id", mxSpec{access: mxAdminRead, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/users/" + f.userID, nil
	}})
	add("PATCH /v1/admin/users/:id", mxSpec{access: mxAdminWrite, ok: 200, req: freshUser("/v1/admin/users/:id", map[string]any{"status": "disabled"})})
	add("DELETE /v1/admin/users/:id", mxSpec{access: mxAdminWrite, ok: 204, req: freshUser("/v1/admin/users/:id", nil)})
	add("POST /v1/admin/users/:id/rotate-password", mxSpec{access: mxAdminWrite, ok: 200, req: freshUser("/v1/admin/users/:id/rotate-password", nil)})
	add("PUT /v1/admin/users/:id/expiry", mxSpec{access: mxAdminWrite, ok: 200, req: freshUser("/v1/admin/users/:id/expiry", map[string]any{"expires_at": "2030-01-01T00:00:00Z"})})
	add("GET /v1/admin/sessions", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/sessions")})
	add("GET /v1/admin/users/:id/sessions", mxSpec{access: mxAdminRead, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/users/" + f.userID + "/sessions", nil
	}})
	add("DELETE /v1/admin/users/:id/sessions", mxSpec{access: mxAdminWrite, ok: 200, req: freshUser("/v1/admin/users/:id/sessions", nil)})
	add("GET /v1/user/sessions", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/v1/user/sessions")})
	add("POST /v1/admin/backup", mxSpec{access: mxAdminWrite, ok: 200, req: mxStatic("/v1/admin/backup")})
	add("GET /v1/admin/users/:id/ssh-keys", mxSpec{access: mxAdminRead, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/users/" + f.userID + "/ssh-keys", nil
	}})
	add("POST /v1/admin/users/:id/ssh-keys", mxSpec{access: mxAdminWrite, ok: 201, req: func(*mxCaller) (string, any) {
		return "/v1/admin/users/" + f.userID + "/ssh-keys", map[string]string{"public_key": f.pubKey()}
	}})
	add("POST /v1/admin/users/:id/ssh-keys/generate", mxSpec{access: mxAdminWrite, ok: 201, req: func(*mxCaller) (string, any) {
		return "/v1/admin/users/" + f.userID + "/ssh-keys/generate", nil
	}})
	add("DELETE /v1/admin/users/:id/ssh-keys/:keyID", mxSpec{access: mxAdminWrite, ok: 204, req: func(*mxCaller) (string, any) {
		return "/v1/admin/users/" + f.userID + "/ssh-keys/" + f.newAdminKey(f.userID), nil
	}})

	// Egress IPs and bindings.
	add("GET /v1/admin/egress-ips", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/egress-ips")})
	add("POST /v1/admin/egress-ips", mxSpec{access: mxAdminWrite, ok: 201, req: func(*mxCaller) (string, any) {
		return "/v1/admin/egress-ips", f.egressBody()
	}})
	add("GET /v1/admin/egress-ips/:id", mxSpec{access: mxAdminRead, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/egress-ips/" + f.egress, nil
	}})
	add("PUT /v1/admin/egress-ips/:id", mxSpec{access: mxAdminWrite, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/egress-ips/" + f.egress, map[string]any{"label": f.uniq("mx-relabelled")}
	}})
	add("DELETE /v1/admin/egress-ips/:id", mxSpec{access: mxAdminWrite, ok: 204, req: func(*mxCaller) (string, any) {
		return "/v1/admin/egress-ips/" + f.newEgress(), nil
	}})
	add("POST /v1/admin/egress-ips/:id/test", mxSpec{access: mxAdminWrite, ok: 503, code: "tunnel_unavailable", req: func(*mxCaller) (string, any) {
		return "/v1/admin/egress-ips/" + f.egress + "/test", nil
	}})
	add("GET /v1/admin/bindings", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/bindings")})
	add("POST /v1/admin/bindings", mxSpec{access: mxAdminWrite, ok: 201, req: func(*mxCaller) (string, any) {
		return "/v1/admin/bindings", map[string]any{"host_id": e.host(f.spareID), "egress_ip_id": f.egress}
	}})
	add("DELETE /v1/admin/bindings/:id", mxSpec{access: mxAdminWrite, ok: 204, req: func(*mxCaller) (string, any) {
		return "/v1/admin/bindings/" + f.newBinding(), nil
	}})

	// Hosts.
	add("GET /v1/admin/hosts", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/hosts")})
	add("POST /v1/admin/hosts", mxSpec{access: mxAdminWrite, ok: 201, req: func(*mxCaller) (string, any) {
		return "/v1/admin/hosts", map[string]any{"user_id": f.spareID}
	}})
	add("GET /v1/admin/hosts/:id", mxSpec{access: mxAdminRead, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/hosts/" + f.hostA, nil
	}})
	for _, a := range []string{"start", "stop", "rebuild", "rotate-ssh-password"} {
		add("POST /v1/admin/hosts/:id/"+a, mxSpec{access: mxAdminWrite, ok: 202, req: hostActionA("/v1/admin/hosts/:id/" + a)})
	}
	add("DELETE /v1/admin/hosts/:id", mxSpec{access: mxAdminWrite, ok: 202, req: func(*mxCaller) (string, any) {
		return "/v1/admin/hosts/" + f.newHost(), nil
	}})

	// Tasks, events, dashboard.
	add("GET /v1/admin/tasks", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/tasks")})
	add("GET /v1/admin/tasks/:id", mxSpec{access: mxAdminRead, ok: 200, req: func(*mxCaller) (string, any) {
		return "/v1/admin/tasks/" + f.taskA, nil
	}})
	add("GET /v1/admin/events", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/events")})
	// The change feed: ?once=1 closes the stream after the replay, so the row's request ends.
	add("GET /v1/admin/events/stream", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/events/stream?once=1")})
	add("GET /v1/user/events/stream", mxSpec{access: mxAuth, ok: 200, req: mxStatic("/v1/user/events/stream?once=1")})
	add("GET /v1/admin/dashboard/stats", mxSpec{access: mxAdminRead, ok: 200, req: mxStatic("/v1/admin/dashboard/stats")})
	return m
}

// expect is the matrix's rule for one route and caller.
func (f *matrixFixture) expect(r api.Route, s mxSpec, c *mxCaller) (int, string) {
	if r.Access == mxPublic {
		return s.ok, s.code
	}
	if !c.valid {
		return http.StatusUnauthorized, "unauthenticated"
	}
	if s.session && c.token {
		return http.StatusBadRequest, "not_a_session"
	}
	switch r.Access {
	case mxAdminRead:
		if c.role != "admin" && c.role != "viewer" {
			return http.StatusForbidden, "forbidden"
		}
	case mxAdminWrite:
		if c.role != "admin" {
			return http.StatusForbidden, "forbidden"
		}
		if !c.write {
			return http.StatusForbidden, "insufficient_scope"
		}
	case mxAuth:
		if s.write && !c.write {
			return http.StatusForbidden, "insufficient_scope"
		}
		if s.hostA && c.userID != f.userID {
			return http.StatusNotFound, "not_found"
		}
		if s.taskA && c.role == "user" && c.userID != f.userID {
			return http.StatusNotFound, "not_found"
		}
	}
	return s.ok, s.code
}

// mxCheckError asserts the one error shape: {"error":{"code":..., "message":...[, "field":...]}}.
func mxCheckError(t *testing.T, method string, r resp, wantCode string) {
	t.Helper()
	if method == http.MethodHead {
		return // a HEAD answer has no body
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json; body %s", ct, r.Body)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &top); err != nil || len(top) != 1 || top["error"] == nil {
		t.Errorf("error body is not {\"error\":{...}}: %s", r.Body)
		return
	}
	var detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	}
	dec := json.NewDecoder(bytes.NewReader(top["error"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&detail); err != nil {
		t.Errorf("error detail %s: %v", top["error"], err)
		return
	}
	if detail.Code == "" || detail.Message == "" {
		t.Errorf("error body without code or message: %s", r.Body)
	}
	if wantCode != "" && detail.Code != wantCode {
		t.Errorf("error code %q, want %q; body %s", detail.Code, wantCode, r.Body)
	}
}

// runRow sends one route × caller request and checks the answer.
func (f *matrixFixture) runRow(t *testing.T, r api.Route, s mxSpec, c *mxCaller) {
	e := f.e
	prev := e.t
	e.t = t
	defer func() { e.t = prev }()
	path, body := s.req(c)
	bearer := c.bearer()
	if s.consumes && c.fresh != nil {
		bearer = c.fresh()
	}
	res := e.raw(r.Method, path, bearer, body)
	if s.consumes {
		f.relogin()
		for _, fn := range f.afterConsume {
			fn()
		}
	}
	want, code := f.expect(r, s, c)
	if res.Status != want {
		t.Errorf("%s %s as %s: status %d, want %d; body %s", r.Method, path, c.name, res.Status, want, res.Body)
	}
	if res.Status >= 300 || want >= 300 {
		mxCheckError(t, r.Method, res, code)
	}
	if res.Status == http.StatusUnauthorized && !strings.Contains(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without a Bearer WWW-Authenticate challenge (got %q)", res.Header.Get("WWW-Authenticate"))
	}
	if code == "insufficient_scope" && !strings.Contains(res.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("insufficient_scope without the matching WWW-Authenticate challenge (got %q)", res.Header.Get("WWW-Authenticate"))
	}
}

// newMatrixFixture creates the accounts, host A and its succeeded task, and an egress IP.
func newMatrixFixture(t *testing.T) *matrixFixture {
	e := newEnv(t)
	f := &matrixFixture{e: e}
	f.userID, f.userJWT = e.user(mxUser, "user")
	f.otherID, f.otherJWT = e.user(mxOther, "user")
	f.viewerID, f.viewerJWT = e.user(mxViewer, "viewer")
	f.spareID, _ = e.user(mxSpare, "user")
	e.user(mxBoot, "user")

	var created struct {
		Host struct {
			ID      string
			ShortID string `json:"short_id"`
		}
	}
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": f.userID}, 201, &created)
	f.hostA, f.shortA = created.Host.ID, created.Host.ShortID
	e.waitIdle(f.hostA)
	// Rotating the SSH password needs no container engine, so its task succeeds: it serves as
	// the task of host A.
	var rot struct{ Task struct{ ID string } }
	e.do("POST", "/v1/admin/hosts/"+f.hostA+"/rotate-ssh-password", e.admin, nil, 202, &rot)
	f.taskA = rot.Task.ID
	e.waitIdle(f.hostA)
	var task struct{ State string }
	e.do("GET", "/v1/admin/tasks/"+f.taskA, e.admin, nil, 200, &task)
	if task.State != "succeeded" {
		t.Fatalf("rotate-ssh-password task is %s, want succeeded", task.State)
	}
	f.egress = f.newEgress()
	return f
}

// mxCheckCoverage fails for a route without an expectation, an expectation without a
// route, or an access level that differs from the one the matrix was written for.
func mxCheckCoverage(t *testing.T, routes []api.Route, specs map[string]mxSpec) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range routes {
		key := r.Method + " " + r.Path
		seen[key] = true
		s, ok := specs[key]
		if !ok {
			t.Errorf("route %s (access %s) has no expectation in the authorization matrix; add it to matrixFixture.specs", key, r.Access)
			continue
		}
		if s.access != r.Access {
			t.Errorf("route %s is registered as %s but the matrix expects %s", key, r.Access, s.access)
		}
	}
	for key := range specs {
		if !seen[key] {
			t.Errorf("matrix expectation %s matches no registered route", key)
		}
	}
}

// ownAccountRows runs the admin SSH-key write routes addressed at the caller's own account:
// they are still admin_write routes, so only an admin whose credential may write gets through
// (the service alone would treat them as self-service).
func (f *matrixFixture) ownAccountRows(t *testing.T, callers []*mxCaller) int {
	rows := 0
	for _, c := range callers {
		if !c.valid {
			continue
		}
		self := []struct {
			method, path string
			ok           int
			req          func() (string, any)
		}{
			{"POST", "/v1/admin/users/:id/ssh-keys", 201, func() (string, any) {
				return "/v1/admin/users/" + c.userID + "/ssh-keys", map[string]string{"public_key": f.pubKey()}
			}},
			{"POST", "/v1/admin/users/:id/ssh-keys/generate", 201, func() (string, any) {
				return "/v1/admin/users/" + c.userID + "/ssh-keys/generate", nil
			}},
			{"DELETE", "/v1/admin/users/:id/ssh-keys/:keyID", 204, func() (string, any) {
				return "/v1/admin/users/" + c.userID + "/ssh-keys/" + f.newOwnKey(c.owner()), nil
			}},
		}
		for _, x := range self {
			rows++
			r := api.Route{Method: x.method, Path: x.path, Access: mxAdminWrite}
			s := mxSpec{access: mxAdminWrite, ok: x.ok, req: func(*mxCaller) (string, any) { return x.req() }}
			t.Run(x.method+" "+x.path+" as "+c.name+" on own account", func(t *testing.T) { f.runRow(t, r, s, c) })
		}
	}
	return rows
}

func TestAuthorizationMatrix(t *testing.T) {
	f := newMatrixFixture(t)
	e := f.e

	// The disabled account got its JWT while active; the logged-out one logged that JWT out but
	// keeps a second session (to own resources). Both are admins, so any leak would succeed.
	disabledID, disabledJWT := e.user(mxDisabled, "admin")
	e.do("PATCH", "/v1/admin/users/"+disabledID, e.admin, map[string]any{"status": "disabled"}, 200, nil)
	loggedOutID, loggedOutJWT := e.user(mxLoggedOut, "admin")
	f.loggedOutLive = e.login(mxLoggedOut, mxPW(mxLoggedOut))
	e.do("POST", "/v1/auth/logout", loggedOutJWT, nil, 204, nil)

	const garbage = "garbage.bearer.value"
	userOwner := func() string { return f.userJWT }
	callers := []*mxCaller{
		{name: "anonymous", password: mxPW(mxUser), bearer: func() string { return "" }, owner: userOwner},
		{name: "user", valid: true, role: "user", userID: f.userID, write: true, password: mxPW(mxUser),
			bearer: userOwner, owner: userOwner, fresh: func() string { return e.login(mxUser, mxPW(mxUser)) }},
		{name: "other user", valid: true, role: "user", userID: f.otherID, write: true, password: mxPW(mxOther),
			bearer: func() string { return f.otherJWT }, owner: func() string { return f.otherJWT },
			fresh: func() string { return e.login(mxOther, mxPW(mxOther)) }},
		{name: "viewer", valid: true, role: "viewer", userID: f.viewerID, write: true, password: mxPW(mxViewer),
			bearer: func() string { return f.viewerJWT }, owner: func() string { return f.viewerJWT },
			fresh: func() string { return e.login(mxViewer, mxPW(mxViewer)) }},
		{name: "admin", valid: true, role: "admin", userID: e.adminID, write: true, password: mxAdminPassword,
			bearer: func() string { return e.admin }, owner: func() string { return e.admin },
			fresh: func() string { return e.login("admin", mxAdminPassword) }},
		{name: "disabled user", userID: disabledID, password: mxPW(mxDisabled),
			bearer: func() string { return disabledJWT }, owner: userOwner},
		{name: "logged-out session", userID: loggedOutID, password: mxPW(mxLoggedOut),
			bearer: func() string { return loggedOutJWT }, owner: func() string { return f.loggedOutLive }},
		{name: "garbage bearer", password: mxPW(mxUser), bearer: func() string { return garbage }, owner: userOwner},
	}

	routes := e.api.Routes()
	specs := f.specs()
	mxCheckCoverage(t, routes, specs)
	rows := 0
	for _, r := range routes {
		s, ok := specs[r.Method+" "+r.Path]
		if !ok {
			continue
		}
		for _, c := range callers {
			rows++
			t.Run(r.Method+" "+r.Path+" as "+c.name, func(t *testing.T) { f.runRow(t, r, s, c) })
		}
	}

	rows += f.ownAccountRows(t, callers)
	t.Logf("checked %d route × caller rows over %d routes and %d callers", rows, len(routes), len(callers))
}

func TestAccessTokenMatrix(t *testing.T) {
	f := newMatrixFixture(t)
	e := f.e

	var adminWrite, adminRead, viewerTok, userTok string
	mint := func() {
		_, _, adminWrite = f.newToken(e.admin, true)
		_, _, adminRead = f.newToken(e.admin, false)
		_, _, viewerTok = f.newToken(f.viewerJWT, true) // asks for write: a viewer's token is read-only anyway
		_, _, userTok = f.newToken(f.userJWT, true)
	}
	mint()
	f.afterConsume = append(f.afterConsume, mint)
	revokedID, _, revoked := f.newToken(e.admin, true)
	e.do("DELETE", "/v1/tokens/"+revokedID, e.admin, nil, 204, nil)
	inactiveID, _, inactive := f.newToken(e.admin, true)
	e.do("PATCH", "/v1/tokens/"+inactiveID, e.admin, map[string]any{"active": false}, 200, nil)

	disabledID, disabledJWT := e.user(mxDisabled, "admin")
	_, _, disabledTok := f.newToken(disabledJWT, true)
	e.do("PATCH", "/v1/admin/users/"+disabledID, e.admin, map[string]any{"status": "disabled"}, 200, nil)

	constant := func(v string) func() string { return func() string { return v } }
	current := func(v *string) func() string { return func() string { return *v } }
	adminOwner := func() string { return e.admin }
	callers := []*mxCaller{
		{name: "admin token", valid: true, role: "admin", userID: e.adminID, token: true, write: true, password: mxAdminPassword,
			bearer: current(&adminWrite), owner: adminOwner},
		{name: "admin read-only token", valid: true, role: "admin", userID: e.adminID, token: true, password: mxAdminPassword,
			bearer: current(&adminRead), owner: adminOwner},
		{name: "viewer token", valid: true, role: "viewer", userID: f.viewerID, token: true, password: mxPW(mxViewer),
			bearer: current(&viewerTok), owner: func() string { return f.viewerJWT }},
		{name: "user token", valid: true, role: "user", userID: f.userID, token: true, write: true, password: mxPW(mxUser),
			bearer: current(&userTok), owner: func() string { return f.userJWT }},
		{name: "revoked token", userID: e.adminID, token: true, password: mxAdminPassword, bearer: constant(revoked), owner: adminOwner},
		{name: "inactive token", userID: e.adminID, token: true, password: mxAdminPassword, bearer: constant(inactive), owner: adminOwner},
		{name: "disabled user's token", userID: disabledID, token: true, password: mxPW(mxDisabled), bearer: constant(disabledTok), owner: adminOwner},
	}

	routes := e.api.Routes()
	specs := f.specs()
	mxCheckCoverage(t, routes, specs)
	rows := 0
	for _, r := range routes {
		s, ok := specs[r.Method+" "+r.Path]
		if !ok || r.Access == mxPublic {
			continue
		}
		for _, c := range callers {
			rows++
			t.Run(r.Method+" "+r.Path+" as "+c.name, func(t *testing.T) { f.runRow(t, r, s, c) })
		}
	}
	rows += f.ownAccountRows(t, callers)
	t.Logf("checked %d route × token rows", rows)
}
