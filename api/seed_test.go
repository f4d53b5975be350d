package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The JSON bodies below are copied byte for byte from the curl examples of the API reference
// (seed 003). Keep them verbatim: the point of TestSeedExamples is that what the reference
// tells operators to send gets the documented answer from this server.
const (
	seedLoginBody = `{"username":"admin","password":"your-password"}`

	seedCreateUserBody = `{
    "username": "newuser",
    "password": "min-8-chars",
    "expires_at": "2026-12-31T23:59:59Z"
  }`

	seedDisableBody = `{"status":"disabled"}`

	seedExpiryBody      = `{"expires_at":"2026-12-31T23:59:59Z"}`
	seedExpiryClearBody = `{"expires_at":null}`

	seedAddKeyBody = `{"public_key":"ssh-ed25519 AAAA... user@host"}`

	seedWireGuardBody = `{
    "label": "hk-wg-01",
    "ip_address": "203.0.113.10",
    "tunnel_type": "wireguard",
    "provider": "manual",
    "wg_endpoint": "vpn-provider.example.com:51820",
    "wg_public_key": "PeerPublicKeyBase64",
    "wg_preshared_key": "PresharedKeyBase64",
    "wg_allowed_ips": "0.0.0.0/0",
    "wg_dns_server": "1.1.1.1",
    "wg_peer_address": "10.0.0.2/32"
  }`

	seedShadowsocksBody = `{
    "label": "jp-ss-01",
    "ip_address": "198.51.100.5",
    "tunnel_type": "proxy",
    "provider": "manual",
    "proxy_config": {
      "type": "shadowsocks",
      "server": "198.51.100.5",
      "server_port": 8388,
      "method": "aes-256-gcm",
      "password": "your-password"
    }
  }`

	seedVMessBody = `{
    "label": "us-vmess-01",
    "ip_address": "203.0.113.20",
    "tunnel_type": "proxy",
    "provider": "manual",
    "proxy_config": {
      "type": "vmess",
      "server": "203.0.113.20",
      "server_port": 443,
      "uuid": "your-uuid",
      "security": "auto",
      "alter_id": 0
    }
  }`

	seedSocksBody = `{
    "label": "eu-socks-01",
    "ip_address": "192.0.2.50",
    "tunnel_type": "proxy",
    "provider": "manual",
    "proxy_config": {
      "type": "socks",
      "server": "192.0.2.50",
      "server_port": 1080,
      "username": "user",
      "password": "pass"
    }
  }`

	seedTrojanBody = `{
    "label": "sg-trojan-01",
    "ip_address": "203.0.113.30",
    "tunnel_type": "proxy",
    "provider": "manual",
    "proxy_config": {
      "type": "trojan",
      "server": "203.0.113.30",
      "server_port": 443,
      "password": "your-password",
      "tls": {"enabled": true, "server_name": "your-domain.com"}
    }
  }`

	seedHTTPProxyBody = `{
    "label": "proxy-http-01",
    "ip_address": "192.0.2.100",
    "tunnel_type": "proxy",
    "provider": "manual",
    "proxy_config": {
      "type": "http",
      "server": "192.0.2.100",
      "server_port": 8080,
      "username": "user",
      "password": "pass"
    }
  }`

	seedUpdateEgressBody = `{"wg_endpoint": "new-endpoint:51820", "wg_public_key": "NewKey"}`

	seedCreateHostBody = `{"user_id": "user-uuid"}`

	seedBindingBody = `{"host_id":"host-uuid","egress_ip_id":"egress-ip-uuid"}`

	seedChangePasswordBody = `{"old_password":"old","new_password":"new"}`

	seedBootstrapBody = `{"username":"user","password":"pass"}`

	seedEntryAuthBody = `{"password":"pass"}`
)

// seedRuntime is a container engine that always succeeds, so host tasks finish.
type seedRuntime struct{ app.NoRuntime } // no processes, no dials

func (seedRuntime) Ping(context.Context) error                  { return nil }
func (seedRuntime) WaitExecReady(context.Context, string) error { return nil }
func (seedRuntime) Create(_ context.Context, s app.HostSpec) (app.RuntimeHost, error) {
	return app.RuntimeHost{HostID: s.HostID, UserID: s.UserID, ContainerID: "ctr-" + s.HostID, Image: s.Image, State: app.StateCreated}, nil
}
func (seedRuntime) Start(context.Context, string) error               { return nil }
func (seedRuntime) Stop(context.Context, string, time.Duration) error { return nil }
func (seedRuntime) Remove(context.Context, string, bool) error        { return nil }
func (seedRuntime) List(context.Context) ([]app.RuntimeHost, error)   { return nil, nil }
func (seedRuntime) Inspect(_ context.Context, id string) (app.RuntimeHost, error) {
	return app.RuntimeHost{HostID: id, State: app.StateRunning}, nil
}
func (seedRuntime) Events(ctx context.Context) (<-chan app.RuntimeEvent, <-chan error) {
	ev, errs := make(chan app.RuntimeEvent), make(chan error)
	go func() {
		<-ctx.Done()
		close(ev)
		close(errs)
	}()
	return ev, errs
}

// seedTunnel passes the three egress checks (and otherwise does what NoTunnel does).
type seedTunnel struct{ app.NoTunnel }

func (seedTunnel) Test(context.Context, app.EgressIP) (app.EgressTestResult, error) {
	return app.EgressTestResult{OK: true, DurationMS: 3, Checks: []app.EgressCheck{
		{Name: "connectivity", OK: true, DurationMS: 1},
		{Name: "exit_ip", OK: true, DurationMS: 1},
		{Name: "dns_leak", OK: true, DurationMS: 1},
	}}, nil
}

func withSeedTunnel(tn app.Tunnel) envOption {
	return func(_ *app.Config, d *app.Deps, _ *api.Config) { d.Tunnel = tn }
}

// seedErr decodes error.code and error.field of an error body.
func seedErr(t *testing.T, r resp) (code, field string) {
	t.Helper()
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("not an error body (%v): %s", err, r.Body)
	}
	return b.Error.Code, b.Error.Field
}

// seedWantInvalid checks a 422 naming field.
func seedWantInvalid(t *testing.T, r resp, field string) {
	t.Helper()
	if r.Status != 422 {
		t.Fatalf("status %d, want 422 (field %s); body %s", r.Status, field, r.Body)
	}
	if c, f := seedErr(t, r); f != field || c != "invalid_"+strings.NewReplacer(".", "_").Replace(field) {
		t.Fatalf("error code/field = %q/%q, want field %q; body %s", c, f, field, r.Body)
	}
}

// seedPublicKey returns a real ed25519 authorized_keys blob (the base64 part).
func seedPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(ssh.MarshalAuthorizedKey(pk)))
	return f[1]
}

// seedWGKey is a valid 32-byte WireGuard key in base64.
func seedWGKey(b byte) string {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// seedWaitTask waits for a task to finish.
func seedWaitTask(e *env, id string) app.Task {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t, err := e.svc.WaitTask(ctx, id)
	if err != nil {
		e.t.Fatalf("task %s: %v", id, err)
	}
	return t
}

type seedHostCreated struct {
	Host struct {
		ID            string `json:"id"`
		ShortID       string `json:"short_id"`
		UserID        string `json:"user_id"`
		Status        string `json:"status"`
		AccessCommand string `json:"access_command"`
	} `json:"host"`
	Task app.Task `json:"task"`
}

type seedAction struct {
	Task        app.Task `json:"task"`
	SSHPassword string   `json:"ssh_password"`
}

func TestSeedExamples(t *testing.T) {
	e := newEnv(t, withRuntime(seedRuntime{}), withSeedTunnel(seedTunnel{}))

	// The reference logs in as admin/your-password; give the harness admin that password
	// (this also exercises a successful self-service password change).
	var cp struct{ Status, Token string }
	e.do("POST", "/v1/user/change-password", e.admin,
		map[string]string{"old_password": "admin-password", "new_password": "your-password"}, 200, &cp)
	if cp.Status != "password_changed" || cp.Token == "" {
		t.Fatalf("change-password answer %+v", cp)
	}

	// --- Authentication ---
	var login struct {
		Token string `json:"token"`
		Role  string `json:"role"`
	}
	e.do("POST", "/v1/auth/login", "", seedLoginBody, 200, &login)
	if login.Token == "" || login.Role != "admin" {
		t.Fatalf("login answer %+v", login)
	}
	var legacy map[string]any
	e.do("POST", "/v1/admin/login", "", seedLoginBody, 200, &legacy)
	var modern map[string]any
	r := e.do("POST", "/v1/auth/login", "", seedLoginBody, 200, &modern)
	if len(legacy) != len(modern) || legacy["role"] != "admin" || legacy["token"] == "" {
		t.Fatalf("/v1/admin/login %v differs from /v1/auth/login %v", legacy, modern)
	}
	for k := range modern {
		if _, ok := legacy[k]; !ok {
			t.Fatalf("/v1/admin/login lacks %q", k)
		}
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("login answer is cacheable: %v", r.Header)
	}
	token := login.Token
	e.do("GET", "/v1/auth/me", legacy["token"].(string), nil, 200, nil)

	// --- Health check ---
	var health struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	e.do("GET", "/healthz", "", nil, 200, &health)
	if health.Status != "ok" || health.Checks["database"] != "ok" {
		t.Fatalf("healthz %+v", health)
	}

	// --- User management ---
	var nu app.UserView
	e.do("POST", "/v1/admin/users", token, seedCreateUserBody, 201, &nu)
	if nu.Username != "newuser" || nu.Role != "user" || nu.Status != "active" || nu.ExpiresAt == nil ||
		!nu.ExpiresAt.Equal(time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Fatalf("created user %+v", nu)
	}
	r = e.do("POST", "/v1/admin/users", token, seedCreateUserBody, 409, nil)
	if c, _ := seedErr(t, r); c == "" {
		t.Fatal("409 without a code")
	}
	userID := nu.ID
	userPW := "min-8-chars"
	e.login("newuser", userPW)

	var users struct{ Users []app.UserView }
	e.do("GET", "/v1/admin/users", token, nil, 200, &users)
	if len(users.Users) != 2 {
		t.Fatalf("users %+v", users)
	}
	var got app.UserView
	e.do("GET", "/v1/admin/users/"+userID, token, nil, 200, &got)
	if got.Username != "newuser" {
		t.Fatalf("user %+v", got)
	}

	e.do("PATCH", "/v1/admin/users/"+userID, token, seedDisableBody, 200, &got)
	if got.Status != "disabled" {
		t.Fatalf("after disable %+v", got)
	}
	// "Values: active, disabled." — the same example with the other value.
	e.do("PATCH", "/v1/admin/users/"+userID, token, `{"status":"active"}`, 200, &got)
	if got.Status != "active" {
		t.Fatalf("after enable %+v", got)
	}

	var rot app.RotatePasswordResult
	e.do("POST", "/v1/admin/users/"+userID+"/rotate-password", token, nil, 200, &rot)
	if len(rot.Password) != 20 || rot.UserID != userID {
		t.Fatalf("rotate-password %+v", rot)
	}
	userPW = rot.Password
	userJWT := e.login("newuser", userPW)

	e.do("PUT", "/v1/admin/users/"+userID+"/expiry", token, seedExpiryBody, 200, &got)
	if got.ExpiresAt == nil || !got.ExpiresAt.Equal(time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Fatalf("after expiry %+v", got)
	}
	e.do("PUT", "/v1/admin/users/"+userID+"/expiry", token, seedExpiryClearBody, 200, &got)
	if got.ExpiresAt != nil {
		t.Fatalf("after clearing expiry %+v", got)
	}
	var raw map[string]any
	e.do("GET", "/v1/admin/users/"+userID, token, nil, 200, &raw)
	if v, ok := raw["expires_at"]; !ok || v != nil {
		t.Fatalf("expires_at should be null: %v", raw)
	}

	// --- SSH keys, admin-managed ---
	var keys struct{ Keys []app.SSHKey }
	e.do("GET", "/v1/admin/users/"+userID+"/ssh-keys", token, nil, 200, &keys)
	if len(keys.Keys) != 0 {
		t.Fatalf("keys %+v", keys)
	}
	// The placeholder "AAAA..." is not a key: 422 naming public_key.
	seedWantInvalid(t, e.raw("POST", "/v1/admin/users/"+userID+"/ssh-keys", token, seedAddKeyBody), "public_key")
	adminKeyBody := strings.Replace(seedAddKeyBody, "AAAA...", seedPublicKey(t), 1)
	var key app.SSHKey
	e.do("POST", "/v1/admin/users/"+userID+"/ssh-keys", token, adminKeyBody, 201, &key)
	if key.Type != "ssh-ed25519" || key.Name != "user@host" || key.Source != "admin" || !strings.HasPrefix(key.Fingerprint, "SHA256:") {
		t.Fatalf("added key %+v", key)
	}
	e.do("POST", "/v1/admin/users/"+userID+"/ssh-keys", token, adminKeyBody, 409, nil)
	var gen app.GeneratedKey
	r = e.do("POST", "/v1/admin/users/"+userID+"/ssh-keys/generate", token, nil, 201, &gen)
	if !strings.Contains(gen.PrivateKey, "OPENSSH PRIVATE KEY") || gen.Key.Source != "generated" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("generated key %+v", gen)
	}
	e.do("DELETE", "/v1/admin/users/"+userID+"/ssh-keys/"+key.ID, token, nil, 204, nil)
	e.do("DELETE", "/v1/admin/users/"+userID+"/ssh-keys/"+key.ID, token, nil, 404, nil)
	e.do("GET", "/v1/admin/users/"+userID+"/ssh-keys", token, nil, 200, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].ID != gen.Key.ID {
		t.Fatalf("keys after delete %+v", keys)
	}

	// --- SSH keys, self-managed (the user's own JWT) ---
	e.do("GET", "/v1/user/ssh-keys", userJWT, nil, 200, &keys)
	if len(keys.Keys) != 1 {
		t.Fatalf("own keys %+v", keys)
	}
	seedWantInvalid(t, e.raw("POST", "/v1/user/ssh-keys", userJWT, seedAddKeyBody), "public_key")
	e.do("POST", "/v1/user/ssh-keys", userJWT, strings.Replace(seedAddKeyBody, "AAAA...", seedPublicKey(t), 1), 201, &key)
	if key.Source != "self" || key.UserID != userID {
		t.Fatalf("self key %+v", key)
	}
	e.do("POST", "/v1/user/ssh-keys/generate", userJWT, nil, 201, &gen)
	if gen.Key.UserID != userID || gen.PrivateKey == "" {
		t.Fatalf("self generated %+v", gen)
	}
	e.do("GET", "/v1/user/ssh-keys", userJWT, nil, 200, &keys)
	if len(keys.Keys) != 3 {
		t.Fatalf("own keys %+v", keys)
	}
	e.do("DELETE", "/v1/user/ssh-keys/"+key.ID, userJWT, nil, 204, nil)

	// --- Egress IPs ---
	// The WireGuard example's keys are placeholders, not 32-byte base64 keys: 422.
	seedWantInvalid(t, e.raw("POST", "/v1/admin/egress-ips", token, seedWireGuardBody), "wg_public_key")
	// "your-uuid" is not a UUID: 422 naming the nested field.
	seedWantInvalid(t, e.raw("POST", "/v1/admin/egress-ips", token, seedVMessBody), "proxy_config.uuid")
	// The four other proxy examples are valid: created, and the secret never shown again.
	proxyIDs := map[string]string{}
	for name, body := range map[string]string{
		"shadowsocks": seedShadowsocksBody, "socks": seedSocksBody, "trojan": seedTrojanBody, "http": seedHTTPProxyBody,
	} {
		var ev app.EgressView
		e.do("POST", "/v1/admin/egress-ips", token, body, 201, &ev)
		seedCheckMasked(t, name, ev)
		e.do("GET", "/v1/admin/egress-ips/"+ev.ID, token, nil, 200, &ev)
		seedCheckMasked(t, name, ev)
		if ev.TunnelType != "proxy" || ev.Provider != "manual" {
			t.Fatalf("%s: %+v", name, ev)
		}
		proxyIDs[name] = ev.ID
	}
	// The WireGuard example with real keys in place of the placeholders.
	wgBody := strings.NewReplacer(`"PeerPublicKeyBase64"`, `"`+seedWGKey(1)+`"`,
		`"PresharedKeyBase64"`, `"`+seedWGKey(100)+`"`).Replace(seedWireGuardBody)
	var wg app.EgressView
	e.do("POST", "/v1/admin/egress-ips", token, wgBody, 201, &wg)
	if wg.WGPrivateKey != "********" || wg.WGPresharedKey != "********" || wg.WGPublicKey != seedWGKey(1) ||
		wg.WGPeerAddress != "10.0.0.2/32" || wg.WGDNSServer != "1.1.1.1" || wg.WGAllowedIPs != "0.0.0.0/0" {
		t.Fatalf("wireguard egress %+v", wg)
	}
	var egs struct {
		EgressIPs []app.EgressView `json:"egress_ips"`
	}
	r = e.do("GET", "/v1/admin/egress-ips", token, nil, 200, &egs)
	if len(egs.EgressIPs) != 5 {
		t.Fatalf("egress list %s", r.Body)
	}
	for _, s := range []string{"your-password", `"pass"`, seedWGKey(100)} {
		if strings.Contains(string(r.Body), s) {
			t.Fatalf("egress list leaks %s: %s", s, r.Body)
		}
	}
	e.do("GET", "/v1/admin/egress-ips/"+wg.ID, token, nil, 200, &wg)
	if wg.WGPrivateKey != "********" || wg.WGPresharedKey != "********" {
		t.Fatalf("wireguard egress %+v", wg)
	}
	// "NewKey" is not a WireGuard key: 422, and nothing changed.
	seedWantInvalid(t, e.raw("PUT", "/v1/admin/egress-ips/"+wg.ID, token, seedUpdateEgressBody), "wg_public_key")
	var wg2 app.EgressView
	e.do("GET", "/v1/admin/egress-ips/"+wg.ID, token, nil, 200, &wg2)
	if wg2.WGEndpoint != "vpn-provider.example.com:51820" || !wg2.UpdatedAt.Equal(wg.UpdatedAt) {
		t.Fatalf("failed update changed the record: %+v", wg2)
	}
	// The same update with a real key succeeds; the masked secrets are kept.
	e.do("PUT", "/v1/admin/egress-ips/"+wg.ID, token, strings.Replace(seedUpdateEgressBody, `"NewKey"`, `"`+seedWGKey(7)+`"`, 1), 200, &wg2)
	if wg2.WGEndpoint != "new-endpoint:51820" || wg2.WGPublicKey != seedWGKey(7) || wg2.WGPresharedKey != "********" {
		t.Fatalf("after update %+v", wg2)
	}
	var test app.EgressTestResult
	e.do("POST", "/v1/admin/egress-ips/"+wg.ID+"/test", token, nil, 200, &test)
	if !test.OK || len(test.Checks) != 3 {
		t.Fatalf("egress test %+v", test)
	}

	// --- Hosts ---
	// "user-uuid" names no user: 404.
	r = e.do("POST", "/v1/admin/hosts", token, seedCreateHostBody, 404, nil)
	if c, _ := seedErr(t, r); c != "not_found" {
		t.Fatalf("host for unknown user: %s", r.Body)
	}
	var hc seedHostCreated
	e.do("POST", "/v1/admin/hosts", token, strings.Replace(seedCreateHostBody, "user-uuid", userID, 1), 201, &hc)
	if hc.Host.UserID != userID || hc.Task.ID == "" || hc.Task.Kind != app.TaskHostCreate || hc.Host.ShortID == "" {
		t.Fatalf("host created %+v", hc)
	}
	hostID := hc.Host.ID
	if task := seedWaitTask(e, hc.Task.ID); task.State != app.TaskSucceeded {
		t.Fatalf("create task %+v", task)
	}
	e.waitIdle(hostID)
	var hosts struct{ Hosts []app.HostView }
	e.do("GET", "/v1/admin/hosts", token, nil, 200, &hosts)
	if len(hosts.Hosts) != 1 || hosts.Hosts[0].ID != hostID {
		t.Fatalf("hosts %+v", hosts)
	}
	var hv app.HostView
	e.do("GET", "/v1/admin/hosts/"+hostID, token, nil, 200, &hv)
	if hv.Status != app.HostRunning || hv.ShortID != hc.Host.ShortID || !strings.Contains(hv.AccessCommand, "newuser+"+hv.ShortID) {
		t.Fatalf("host %+v", hv)
	}
	for _, action := range []string{"start", "stop", "rebuild", "rotate-ssh-password"} {
		var res seedAction
		r := e.do("POST", "/v1/admin/hosts/"+hostID+"/"+action, token, nil, 202, &res)
		if res.Task.ID == "" || res.Task.HostID != hostID || res.Task.State != app.TaskQueued || res.Task.Options != nil {
			t.Fatalf("%s: %s", action, r.Body)
		}
		if action == "rotate-ssh-password" && (len(res.SSHPassword) != 20 || r.Header.Get("Cache-Control") != "no-store") {
			t.Fatalf("rotate-ssh-password: %s", r.Body)
		}
		if task := seedWaitTask(e, res.Task.ID); task.State != app.TaskSucceeded {
			t.Fatalf("%s task %+v", action, task)
		}
		e.waitIdle(hostID)
	}

	// --- Bindings ---
	r = e.do("POST", "/v1/admin/bindings", token, seedBindingBody, 404, nil)
	var b app.Binding
	e.do("POST", "/v1/admin/bindings", token, strings.NewReplacer("host-uuid", hostID, "egress-ip-uuid", wg.ID).Replace(seedBindingBody), 201, &b)
	if b.HostID != hostID || b.EgressIPID != wg.ID {
		t.Fatalf("binding %+v", b)
	}
	var bindings struct{ Bindings []app.Binding }
	e.do("GET", "/v1/admin/bindings", token, nil, 200, &bindings)
	if len(bindings.Bindings) != 1 {
		t.Fatalf("bindings %+v", bindings)
	}
	e.do("GET", "/v1/admin/hosts/"+hostID, token, nil, 200, &hv)
	if hv.Egress == nil || hv.Egress.ID != wg.ID || hv.Egress.BindingID != b.ID {
		t.Fatalf("host egress %+v", hv.Egress)
	}
	// "Rejects deletion (409) if IP is still bound to hosts. Unbind first."
	r = e.do("DELETE", "/v1/admin/egress-ips/"+wg.ID, token, nil, 409, nil)
	if c, _ := seedErr(t, r); c != "egress_ip_bound" {
		t.Fatalf("bound delete %s", r.Body)
	}
	e.do("DELETE", "/v1/admin/bindings/"+b.ID, token, nil, 204, nil)
	e.do("DELETE", "/v1/admin/bindings/"+b.ID, token, nil, 404, nil)
	e.do("DELETE", "/v1/admin/egress-ips/"+wg.ID, token, nil, 204, nil)
	e.do("GET", "/v1/admin/egress-ips/"+wg.ID, token, nil, 404, nil)

	// --- User portal ---
	// "new" is shorter than 8 characters: 422 naming new_password; the password is unchanged.
	seedWantInvalid(t, e.raw("POST", "/v1/user/change-password", userJWT, seedChangePasswordBody), "new_password")
	e.do("GET", "/v1/auth/me", userJWT, nil, 200, nil)
	var own struct{ Hosts []app.HostView }
	e.do("GET", "/v1/user/hosts", userJWT, nil, 200, &own)
	if len(own.Hosts) != 1 || own.Hosts[0].ID != hostID {
		t.Fatalf("own hosts %+v", own)
	}
	e.do("GET", "/v1/user/hosts/"+hostID, userJWT, nil, 200, &hv)
	var res seedAction
	e.do("POST", "/v1/user/hosts/"+hostID+"/rebuild", userJWT, nil, 202, &res)
	if res.Task.Kind != app.TaskHostRebuild {
		t.Fatalf("own rebuild %+v", res)
	}
	e.do("GET", "/v1/user/tasks/"+res.Task.ID, userJWT, nil, 200, nil)
	seedWaitTask(e, res.Task.ID)
	e.waitIdle(hostID)

	// --- Bootstrap ---
	r = e.do("GET", "/v1/bootstrap/script", "", nil, 200, nil)
	if !strings.HasPrefix(string(r.Body), "#!/bin/sh") || !strings.Contains(r.Header.Get("Content-Type"), "shellscript") {
		t.Fatalf("bootstrap script %s", r.Body)
	}
	// "pass" cannot be anyone's password (8+ characters): the generic 401.
	r = e.do("POST", "/v1/bootstrap/sessions", "", seedBootstrapBody, 401, nil)
	if c, _ := seedErr(t, r); c != "unauthenticated" {
		t.Fatalf("bootstrap %s", r.Body)
	}
	var sess bootSessionBody
	e.do("POST", "/v1/bootstrap/sessions", "", strings.NewReplacer(`"user"`, `"newuser"`, `"pass"`, `"`+userPW+`"`).Replace(seedBootstrapBody), 202, &sess)
	if sess.TaskID == "" || sess.HostID != hostID || sess.StatusURL != "/v1/bootstrap/tasks/"+sess.TaskID {
		t.Fatalf("bootstrap session %+v", sess)
	}
	seedWaitTask(e, sess.TaskID)
	var bst bootStatusBody
	e.do("GET", "/v1/bootstrap/tasks/"+sess.TaskID, sess.Secret, nil, 200, &bst)
	if bst.State != app.TaskSucceeded || bst.Handof != "/v1/bootstrap/tasks/"+sess.TaskID+"/handoff" {
		t.Fatalf("bootstrap task %+v", bst)
	}
	var ho app.Handoff
	e.do("GET", "/v1/bootstrap/tasks/"+sess.TaskID+"/handoff", sess.Secret, nil, 200, &ho)
	if ho.SSHUser != "newuser+"+hv.ShortID || ho.SSHPort == 0 || ho.SSHHost == "" || ho.SSHPass != "" {
		t.Fatalf("handoff %+v", ho)
	}
	// The status and handoff answer only the session's secret (bootstrap_test.go has the rest).
	e.do("GET", "/v1/bootstrap/tasks/"+sess.TaskID, "", nil, 401, nil)
	e.do("GET", "/v1/bootstrap/tasks/"+"00000000-0000-0000-0000-000000000000", sess.Secret, nil, 401, nil)
	e.do("GET", "/v1/bootstrap/tasks/"+"00000000-0000-0000-0000-000000000000/handoff", sess.Secret, nil, 401, nil)
	e.waitIdle(hostID)

	// --- Entry short link ---
	r = e.do("GET", "/entry/"+hv.ShortID, "", nil, 200, nil)
	if !strings.HasPrefix(string(r.Body), "#!/bin/sh") || !strings.Contains(string(r.Body), "SHORT_ID='"+hv.ShortID+"'") {
		t.Fatalf("entry script %s", r.Body)
	}
	e.do("GET", "/entry/NOT-AN-ID", "", nil, 404, nil)
	r = e.do("POST", "/v1/entry/"+hv.ShortID+"/auth", "", seedEntryAuthBody, 401, nil)
	if c, _ := seedErr(t, r); c != "unauthenticated" {
		t.Fatalf("entry auth %s", r.Body)
	}
	e.do("POST", "/v1/entry/"+hv.ShortID+"/auth", "", strings.Replace(seedEntryAuthBody, `"pass"`, `"`+userPW+`"`, 1), 200, &ho)
	if ho.SSHUser != "newuser+"+hv.ShortID || len(ho.SSHPass) != 20 || ho.SSHHost == "" || ho.SSHPort == 0 {
		t.Fatalf("entry handoff %+v", ho)
	}

	// --- Tasks ---
	var tasks struct{ Tasks []app.Task }
	e.do("GET", "/v1/admin/tasks", token, nil, 200, &tasks)
	if len(tasks.Tasks) < 7 {
		t.Fatalf("tasks %+v", tasks)
	}
	for _, tk := range tasks.Tasks {
		if tk.Options != nil {
			t.Fatalf("task options exposed: %+v", tk)
		}
	}
	e.do("GET", "/v1/admin/tasks/"+hc.Task.ID, token, nil, 200, nil)

	// --- Events ---
	var page app.EventPage
	e.do("GET", "/v1/admin/events?limit=50", token, nil, 200, &page)
	if len(page.Events) == 0 || len(page.Events) > 50 {
		t.Fatalf("events: %d", len(page.Events))
	}
	e.do("GET", "/v1/admin/events?user_id="+url.QueryEscape(userID), token, nil, 200, &page)
	if len(page.Events) == 0 {
		t.Fatal("no events for the user")
	}
	for _, ev := range page.Events {
		if ev.UserID != userID {
			t.Fatalf("user filter returned %+v", ev)
		}
	}
	e.do("GET", "/v1/admin/events?host_id="+url.QueryEscape(hostID), token, nil, 200, &page)
	if len(page.Events) == 0 {
		t.Fatal("no events for the host")
	}
	for _, ev := range page.Events {
		if ev.HostID != hostID {
			t.Fatalf("host filter returned %+v", ev)
		}
	}
	// The reference's March 2026 range: valid, and empty (this server's clock is November 2026).
	e.do("GET", "/v1/admin/events?since=2026-03-01T00:00:00Z&until=2026-03-31T23:59:59Z", token, nil, 200, &page)
	if len(page.Events) != 0 {
		t.Fatalf("events in March: %+v", page.Events)
	}
	e.do("GET", "/v1/admin/events?since=2026-11-01T00:00:00Z&until=2026-11-30T23:59:59Z", token, nil, 200, &page)
	if len(page.Events) == 0 {
		t.Fatal("no events in November")
	}

	// --- Dashboard ---
	var st app.Stats
	e.do("GET", "/v1/admin/dashboard/stats", token, nil, 200, &st)
	if st.Users.Total != 2 || st.Users.Active != 2 || st.Hosts.Total != 1 || st.EgressIPs.Total != 4 || st.Bindings != 0 || st.Events24h == 0 {
		t.Fatalf("stats %+v", st)
	}

	// --- Delete host: 202 with a task; once done the host is gone ---
	e.do("DELETE", "/v1/admin/hosts/"+hostID, token, nil, 202, &res)
	if res.Task.Kind != app.TaskHostDelete {
		t.Fatalf("delete host %+v", res)
	}
	if task := seedWaitTask(e, res.Task.ID); task.State != app.TaskSucceeded {
		t.Fatalf("delete task %+v", task)
	}
	e.do("GET", "/v1/admin/hosts/"+hostID, token, nil, 404, nil)

	// --- Delete user: 204, and the user's hosts are cascade-deleted ---
	var hc2 seedHostCreated
	e.do("POST", "/v1/admin/hosts", token, strings.Replace(seedCreateHostBody, "user-uuid", userID, 1), 201, &hc2)
	seedWaitTask(e, hc2.Task.ID)
	e.do("DELETE", "/v1/admin/users/"+userID, token, nil, 204, nil)
	e.do("GET", "/v1/admin/users/"+userID, token, nil, 404, nil)
	e.do("GET", "/v1/admin/hosts/"+hc2.Host.ID, token, nil, 404, nil)
	e.do("GET", "/v1/auth/me", userJWT, nil, 401, nil)
	e.do("DELETE", "/v1/admin/users/"+userID, token, nil, 404, nil)
	for _, id := range proxyIDs {
		e.do("DELETE", "/v1/admin/egress-ips/"+id, token, nil, 204, nil)
	}
}

// seedCheckMasked checks that an egress view shows its proxy secret as "********".
func seedCheckMasked(t *testing.T, name string, ev app.EgressView) {
	t.Helper()
	var pc map[string]any
	if err := json.Unmarshal(ev.ProxyConfig, &pc); err != nil {
		t.Fatalf("%s: proxy_config %s: %v", name, ev.ProxyConfig, err)
	}
	if pc["type"] != name || pc["password"] != "********" {
		t.Fatalf("%s: proxy_config not masked: %s", name, ev.ProxyConfig)
	}
}

// TestSeedEgressTestWithoutTunnel: the reference documents the three checks, not a status.
// A server built without the egress room answers the test call 503 tunnel_unavailable rather
// than pretending the checks passed.
func TestSeedEgressTestWithoutTunnel(t *testing.T) {
	e := newEnv(t)
	var ev app.EgressView
	e.do("POST", "/v1/admin/egress-ips", e.admin, seedSocksBody, 201, &ev)
	r := e.do("POST", "/v1/admin/egress-ips/"+ev.ID+"/test", e.admin, nil, 503, nil)
	if c, _ := seedErr(t, r); c != "tunnel_unavailable" {
		t.Fatalf("egress test without tunnel: %s", r.Body)
	}
	// Without a container engine the health check still answers, degraded.
	var health struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	e.do("GET", "/healthz", "", nil, 200, &health)
	if health.Status != "degraded" || health.Checks["database"] != "ok" {
		t.Fatalf("healthz %+v", health)
	}
}
