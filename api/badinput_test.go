package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// badDel marks a key to remove from a base body.
type badDelT struct{}

var badDel = badDelT{}

// badWith copies base and applies mods (badDel removes a key).
func badWith(base map[string]any, mods map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range mods {
		if _, del := v.(badDelT); del {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// badFixture is a server with a little of everything, so a failing request has something
// it could wrongly change.
type badFixture struct {
	e         *env
	aliceID   string
	aliceJWT  string
	hostID    string // bound to egressID
	freeHost  string // not bound
	egressID  string
	bindingID string
	tokenID   string
	keyID     string
}

func newBadFixture(t *testing.T) *badFixture {
	e := newEnv(t, withRuntime(seedRuntime{}))
	f := &badFixture{e: e}
	f.aliceID, f.aliceJWT = e.user("alice", "user")
	var ev app.EgressView
	e.do("POST", "/v1/admin/egress-ips", e.admin, seedSocksBody, 201, &ev)
	f.egressID = ev.ID
	var hc seedHostCreated
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": f.aliceID, "egress_ip_id": f.egressID}, 201, &hc)
	f.hostID = hc.Host.ID
	seedWaitTask(e, hc.Task.ID)
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": f.aliceID}, 201, &hc)
	f.freeHost = hc.Host.ID
	seedWaitTask(e, hc.Task.ID)
	e.waitIdle(f.hostID)
	e.waitIdle(f.freeHost)
	var hv app.HostView
	e.do("GET", "/v1/admin/hosts/"+f.hostID, e.admin, nil, 200, &hv)
	if hv.Egress == nil {
		t.Fatalf("fixture host not bound: %+v", hv)
	}
	f.bindingID = hv.Egress.BindingID
	var tok app.CreatedToken
	e.do("POST", "/v1/tokens", f.aliceJWT, map[string]any{"name": "ci"}, 201, &tok)
	f.tokenID = tok.ID
	var k app.SSHKey
	e.do("POST", "/v1/user/ssh-keys", f.aliceJWT, map[string]string{"public_key": "ssh-ed25519 " + seedPublicKey(t) + " alice@laptop"}, 201, &k)
	f.keyID = k.ID
	return f
}

// snapshot renders everything a request could change, as the API shows it. Audit events of
// failures and denials are left out: recording a refusal is not a change.
func (f *badFixture) snapshot() string {
	e := f.e
	var sb strings.Builder
	for _, p := range []string{"/v1/admin/users", "/v1/admin/egress-ips", "/v1/admin/hosts", "/v1/admin/bindings",
		"/v1/admin/tokens", "/v1/admin/tasks?limit=1000"} {
		r := e.do("GET", p, e.admin, nil, 200, nil)
		fmt.Fprintf(&sb, "%s %s\n", p, r.Body)
	}
	var users struct{ Users []app.UserView }
	e.do("GET", "/v1/admin/users", e.admin, nil, 200, &users)
	for _, u := range users.Users {
		r := e.do("GET", "/v1/admin/users/"+u.ID+"/ssh-keys", e.admin, nil, 200, nil)
		fmt.Fprintf(&sb, "keys %s %s\n", u.ID, r.Body)
	}
	var st app.Stats
	e.do("GET", "/v1/admin/dashboard/stats", e.admin, nil, 200, &st)
	st.Events24h = 0
	j, _ := json.Marshal(st)
	fmt.Fprintf(&sb, "stats %s\n", j)
	var page app.EventPage
	e.do("GET", "/v1/admin/events?limit=500", e.admin, nil, 200, &page)
	if page.NextCursor != "" {
		e.t.Fatal("snapshot: more than 500 events")
	}
	for _, ev := range page.Events {
		if ev.Result == app.ResultSuccess {
			fmt.Fprintf(&sb, "event %s %s %s %s\n", ev.ID, ev.Action, ev.TargetID, ev.Message)
		}
	}
	return sb.String()
}

type badCase struct {
	name   string
	method string
	path   string
	bearer string
	body   any
	status int
	code   string // error.code; "" skips the check
	field  string // error.field; checked when code is set or status is 422
}

func (f *badFixture) run(t *testing.T, cases []badCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := f.e
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			before := f.snapshot()
			r := e.raw(c.method, c.path, c.bearer, c.body)
			if r.Status != c.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", c.method, c.path, r.Status, c.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			code, field := seedErr(t, r)
			if c.code != "" && code != c.code {
				t.Fatalf("error.code %q, want %q; body %s", code, c.code, r.Body)
			}
			if (c.code != "" || c.status == 422) && field != c.field {
				t.Fatalf("error.field %q, want %q; body %s", field, c.field, r.Body)
			}
			if c.status == 422 && code != "invalid_"+strings.NewReplacer(".", "_").Replace(c.field) {
				t.Fatalf("error.code %q does not match field %q", code, c.field)
			}
			if after := f.snapshot(); after != before {
				t.Fatalf("a failed request changed state:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// badEndpoint is one JSON-body endpoint with a field of each shape.
type badEndpoint struct {
	name        string
	method      string
	path        string
	bearer      string
	strField    string // a string field
	typedField  string // a field with a non-string type (or string when all are)
	typedBadVal string // JSON of a value of the wrong type for typedField
}

func (f *badFixture) endpoints() []badEndpoint {
	e := f.e
	return []badEndpoint{
		{"create-user", "POST", "/v1/admin/users", e.admin, "username", "expires_at", `5`},
		{"create-egress", "POST", "/v1/admin/egress-ips", e.admin, "label", "label", `true`},
		{"create-host", "POST", "/v1/admin/hosts", e.admin, "user_id", "cpu", `"two"`},
		{"create-binding", "POST", "/v1/admin/bindings", e.admin, "host_id", "egress_ip_id", `7`},
		{"create-token", "POST", "/v1/tokens", f.aliceJWT, "name", "write", `"yes"`},
		{"change-password", "POST", "/v1/user/change-password", f.aliceJWT, "new_password", "old_password", `12345678`},
		{"patch-user", "PATCH", "/v1/admin/users/" + f.aliceID, e.admin, "status", "role", `false`},
	}
}

// structural cases: what the strict decoder refuses before any service code runs.
func (f *badFixture) structuralCases() []badCase {
	var cs []badCase
	huge := strings.Repeat("a", 1<<20+10)
	for _, ep := range f.endpoints() {
		add := func(name string, body any, status int, code, field string) {
			cs = append(cs, badCase{name: ep.name + "/" + name, method: ep.method, path: ep.path, bearer: ep.bearer,
				body: body, status: status, code: code, field: field})
		}
		add("truncated", `{"`+ep.strField+`":`, 400, "malformed_json", "")
		add("truncated-object", `{"`+ep.strField+`":"x"`, 400, "malformed_json", "")
		add("syntax", `{`+ep.strField+`: "x"}`, 400, "malformed_json", "")
		add("trailing-comma", `{"`+ep.strField+`":"x",}`, 400, "malformed_json", "")
		add("trailing-data", `{"`+ep.strField+`":"x"} {}`, 400, "malformed_json", "")
		add("trailing-garbage", `{"`+ep.strField+`":"x"}x`, 400, "malformed_json", "")
		add("single-quotes", `{'`+ep.strField+`':'x'}`, 400, "malformed_json", "")
		add("unknown-field", `{"bogus_field":1}`, 400, "unknown_field", "bogus_field")
		add("unknown-field-among-valid", `{"`+ep.strField+`":"x","Extra":{"a":[1]}}`, 400, "unknown_field", "Extra")
		add("wrong-type", `{"`+ep.typedField+`":`+ep.typedBadVal+`}`, 400, "wrong_type", ep.typedField)
		add("wrong-type-object", `{"`+ep.strField+`":{"a":1}}`, 400, "wrong_type", ep.strField)
		add("wrong-type-array", `{"`+ep.strField+`":["x"]}`, 400, "wrong_type", ep.strField)
		add("array-body", `[]`, 400, "wrong_type", "")
		add("string-body", `"hello"`, 400, "wrong_type", "")
		add("number-body", `42`, 400, "wrong_type", "")
		add("empty", "", 400, "empty_body", "")
		add("whitespace", " \n\t ", 400, "empty_body", "")
		add("too-large", `{"`+ep.strField+`":"`+huge+`"}`, 413, "body_too_large", "")
		add("too-large-padding", `{}`+strings.Repeat(" ", 1<<20+10), 413, "body_too_large", "")
	}
	return cs
}

func TestBadInputStructural(t *testing.T) {
	f := newBadFixture(t)
	f.run(t, f.structuralCases())
}

func TestBadInputSemantic(t *testing.T) {
	f := newBadFixture(t)
	e := f.e
	adm, alice := e.admin, f.aliceJWT
	var cs []badCase
	add := func(name, method, path, bearer string, body any, status int, field string) {
		cs = append(cs, badCase{name: name, method: method, path: path, bearer: bearer, body: body, status: status, field: field})
	}

	// Users.
	user := map[string]any{"username": "bob", "password": "password-bob"}
	for _, c := range []struct {
		name, field string
		mod         map[string]any
	}{
		{"username-too-short", "username", map[string]any{"username": "ab"}},
		{"username-too-long", "username", map[string]any{"username": strings.Repeat("b", 51)}},
		{"username-space", "username", map[string]any{"username": "bad name"}},
		{"username-upper", "username", map[string]any{"username": "Bob"}},
		{"username-non-ascii", "username", map[string]any{"username": "émile"}},
		{"username-slash", "username", map[string]any{"username": "bob/../x"}},
		{"username-plus", "username", map[string]any{"username": "bob+host"}},
		{"username-at", "username", map[string]any{"username": "bob@host"}},
		{"username-newline", "username", map[string]any{"username": "bob\nx"}},
		{"username-empty", "username", map[string]any{"username": ""}},
		{"username-missing", "username", map[string]any{"username": badDel}},
		{"username-checked-first", "username", map[string]any{"username": "x", "password": "", "role": "root"}},
		{"password-short", "password", map[string]any{"password": "1234567"}},
		{"password-empty", "password", map[string]any{"password": ""}},
		{"password-missing", "password", map[string]any{"password": badDel}},
		{"password-too-long", "password", map[string]any{"password": strings.Repeat("p", 73)}},
		{"role-unknown", "role", map[string]any{"role": "root"}},
		{"role-case", "role", map[string]any{"role": "Admin"}},
		{"role-system", "role", map[string]any{"role": "system"}},
	} {
		add("user/"+c.name, "POST", "/v1/admin/users", adm, badWith(user, c.mod), 422, c.field)
	}
	add("user/null-body", "POST", "/v1/admin/users", adm, `null`, 422, "username")
	cs = append(cs, badCase{name: "user/duplicate", method: "POST", path: "/v1/admin/users", bearer: adm,
		body: map[string]any{"username": "alice", "password": "password-other"}, status: 409, code: "duplicate_username"})

	// Egress IPs: WireGuard.
	wg := map[string]any{"label": "wg-1", "ip_address": "203.0.113.10", "tunnel_type": "wireguard",
		"wg_endpoint": "vpn.example.com:51820", "wg_public_key": seedWGKey(1), "wg_peer_address": "10.0.0.2/32"}
	e.do("POST", "/v1/admin/egress-ips", adm, wg, 201, nil) // the base is valid
	short := seedWGKey(1)[:40] + "=="
	for _, c := range []struct {
		name, field string
		mod         map[string]any
	}{
		{"label-empty", "label", map[string]any{"label": ""}},
		{"label-missing", "label", map[string]any{"label": badDel}},
		{"label-leading-dash", "label", map[string]any{"label": "-wg"}},
		{"label-too-long", "label", map[string]any{"label": strings.Repeat("l", 65)}},
		{"label-newline", "label", map[string]any{"label": "wg\nx"}},
		{"label-non-ascii", "label", map[string]any{"label": "wg-東京"}},
		{"ip-bad", "ip_address", map[string]any{"ip_address": "999.1.1.1"}},
		{"ip-hostname", "ip_address", map[string]any{"ip_address": "example.com"}},
		{"ip-cidr", "ip_address", map[string]any{"ip_address": "203.0.113.0/24"}},
		{"ip-missing", "ip_address", map[string]any{"ip_address": badDel}},
		{"tunnel-unknown", "tunnel_type", map[string]any{"tunnel_type": "gre"}},
		{"tunnel-missing", "tunnel_type", map[string]any{"tunnel_type": badDel}},
		{"tunnel-case", "tunnel_type", map[string]any{"tunnel_type": "WireGuard"}},
		{"provider-too-long", "provider", map[string]any{"provider": strings.Repeat("p", 65)}},
		{"endpoint-missing", "wg_endpoint", map[string]any{"wg_endpoint": badDel}},
		{"endpoint-no-port", "wg_endpoint", map[string]any{"wg_endpoint": "vpn.example.com"}},
		{"endpoint-port-zero", "wg_endpoint", map[string]any{"wg_endpoint": "vpn.example.com:0"}},
		{"endpoint-port-high", "wg_endpoint", map[string]any{"wg_endpoint": "vpn.example.com:70000"}},
		{"endpoint-port-name", "wg_endpoint", map[string]any{"wg_endpoint": "vpn.example.com:wg"}},
		{"endpoint-bad-host", "wg_endpoint", map[string]any{"wg_endpoint": "bad_host!:51820"}},
		{"endpoint-empty-host", "wg_endpoint", map[string]any{"wg_endpoint": ":51820"}},
		{"endpoint-newline", "wg_endpoint", map[string]any{"wg_endpoint": "vpn.example.com:51820\nPostUp = x"}},
		{"public-key-missing", "wg_public_key", map[string]any{"wg_public_key": badDel}},
		{"public-key-placeholder", "wg_public_key", map[string]any{"wg_public_key": "PeerPublicKeyBase64"}},
		{"public-key-31-bytes", "wg_public_key", map[string]any{"wg_public_key": short}},
		{"public-key-not-base64", "wg_public_key", map[string]any{"wg_public_key": strings.Repeat("!", 43) + "="}},
		{"public-key-embedded-newline", "wg_public_key", map[string]any{"wg_public_key": seedWGKey(1)[:20] + "\n" + seedWGKey(1)[20:]}},
		{"private-key-bad", "wg_private_key", map[string]any{"wg_private_key": "nope"}},
		{"preshared-key-bad", "wg_preshared_key", map[string]any{"wg_preshared_key": "PresharedKeyBase64"}},
		{"allowed-ips-prefix", "wg_allowed_ips", map[string]any{"wg_allowed_ips": "0.0.0.0/33"}},
		{"allowed-ips-item", "wg_allowed_ips", map[string]any{"wg_allowed_ips": "10.0.0.0/8, bogus"}},
		{"allowed-ips-trailing-comma", "wg_allowed_ips", map[string]any{"wg_allowed_ips": "10.0.0.0/8,"}},
		{"dns-hostname", "wg_dns_server", map[string]any{"wg_dns_server": "dns.example.com"}},
		{"peer-missing", "wg_peer_address", map[string]any{"wg_peer_address": badDel}},
		{"peer-bad", "wg_peer_address", map[string]any{"wg_peer_address": "10.0.0.300"}},
		{"peer-bad-prefix", "wg_peer_address", map[string]any{"wg_peer_address": "10.0.0.2/40"}},
		{"proxy-config-on-wireguard", "proxy_config", map[string]any{"proxy_config": map[string]any{"type": "socks", "server": "x.example", "server_port": 1}}},
	} {
		add("egress-wg/"+c.name, "POST", "/v1/admin/egress-ips", adm, badWith(wg, c.mod), 422, c.field)
	}

	// Egress IPs: proxies, per type.
	pe := func(pc map[string]any, mods map[string]any) map[string]any {
		return badWith(map[string]any{"label": "px-1", "ip_address": "192.0.2.50", "tunnel_type": "proxy", "proxy_config": pc}, mods)
	}
	pcb := func(typ string, mods map[string]any) map[string]any {
		base := map[string]any{"type": typ, "server": "proxy.example.com", "server_port": 443}
		switch typ {
		case "shadowsocks":
			base["method"], base["password"] = "aes-256-gcm", "secret-pw"
		case "vmess", "vless":
			base["uuid"] = "b831381d-6324-4d53-ad4f-8cda48b30811"
		case "trojan":
			base["password"] = "secret-pw"
		}
		return badWith(base, mods)
	}
	for _, typ := range []string{"socks", "http", "shadowsocks", "vmess", "vless", "trojan"} {
		e.do("POST", "/v1/admin/egress-ips", adm, pe(pcb(typ, nil), nil), 201, nil) // each base is valid
	}
	for _, c := range []struct {
		name, field string
		body        any
	}{
		{"wg-field-on-proxy", "tunnel_type", pe(pcb("socks", nil), map[string]any{"wg_endpoint": "vpn.example.com:51820"})},
		{"config-missing", "proxy_config", pe(nil, map[string]any{"proxy_config": badDel})},
		{"config-null", "proxy_config", pe(nil, nil)},
		{"config-string", "proxy_config", pe(nil, map[string]any{"proxy_config": "socks://x"})},
		{"config-array", "proxy_config", pe(nil, map[string]any{"proxy_config": []any{1}})},
		{"config-wrong-type", "proxy_config", pe(pcb("socks", map[string]any{"server_port": "1080"}), nil)},
		{"config-tls-wrong-type", "proxy_config", pe(pcb("trojan", map[string]any{"tls": "on"}), nil)},
		{"type-missing", "proxy_config.type", pe(pcb("socks", map[string]any{"type": badDel}), nil)},
		{"type-unknown", "proxy_config.type", pe(pcb("hysteria2", nil), nil)},
		{"server-missing", "proxy_config.server", pe(pcb("socks", map[string]any{"server": badDel}), nil)},
		{"server-bad", "proxy_config.server", pe(pcb("http", map[string]any{"server": "bad host"}), nil)},
		{"server-too-long", "proxy_config.server", pe(pcb("http", map[string]any{"server": strings.Repeat("a.", 127) + "com"}), nil)},
		{"port-missing", "proxy_config.server_port", pe(pcb("socks", map[string]any{"server_port": badDel}), nil)},
		{"port-zero", "proxy_config.server_port", pe(pcb("trojan", map[string]any{"server_port": 0}), nil)},
		{"port-high", "proxy_config.server_port", pe(pcb("vmess", map[string]any{"server_port": 65536}), nil)},
		{"socks-version", "proxy_config.version", pe(pcb("socks", map[string]any{"version": "6"}), nil)},
		{"socks-password-no-user", "proxy_config.username", pe(pcb("socks", map[string]any{"password": "p"}), nil)},
		{"http-password-no-user", "proxy_config.username", pe(pcb("http", map[string]any{"password": "p"}), nil)},
		{"ss-method-missing", "proxy_config.method", pe(pcb("shadowsocks", map[string]any{"method": badDel}), nil)},
		{"ss-method-bad", "proxy_config.method", pe(pcb("shadowsocks", map[string]any{"method": "rc4-md5"}), nil)},
		{"ss-password-missing", "proxy_config.password", pe(pcb("shadowsocks", map[string]any{"password": badDel}), nil)},
		{"vmess-uuid-missing", "proxy_config.uuid", pe(pcb("vmess", map[string]any{"uuid": badDel}), nil)},
		{"vmess-uuid-bad", "proxy_config.uuid", pe(pcb("vmess", map[string]any{"uuid": "your-uuid"}), nil)},
		{"vmess-security", "proxy_config.security", pe(pcb("vmess", map[string]any{"security": "rot13"}), nil)},
		{"vmess-alter-id", "proxy_config.alter_id", pe(pcb("vmess", map[string]any{"alter_id": -1}), nil)},
		{"vless-uuid-bad", "proxy_config.uuid", pe(pcb("vless", map[string]any{"uuid": "1234"}), nil)},
		{"vless-flow", "proxy_config.flow", pe(pcb("vless", map[string]any{"flow": "xtls-rprx-direct"}), nil)},
		{"trojan-password-missing", "proxy_config.password", pe(pcb("trojan", map[string]any{"password": badDel}), nil)},
		{"trojan-password-empty", "proxy_config.password", pe(pcb("trojan", map[string]any{"password": ""}), nil)},
		{"tls-server-name", "proxy_config.tls.server_name", pe(pcb("trojan", map[string]any{"tls": map[string]any{"enabled": true, "server_name": "bad name"}}), nil)},
	} {
		add("egress-proxy/"+c.name, "POST", "/v1/admin/egress-ips", adm, c.body, 422, c.field)
	}
	// Updates are validated whole too.
	add("egress-update/bad-key", "PUT", "/v1/admin/egress-ips/"+f.egressID, adm, `{"wg_public_key":"NewKey"}`, 422, "tunnel_type")
	add("egress-update/bad-label", "PUT", "/v1/admin/egress-ips/"+f.egressID, adm, `{"label":""}`, 422, "label")
	add("egress-update/switch-to-wg-incomplete", "PUT", "/v1/admin/egress-ips/"+f.egressID, adm, `{"tunnel_type":"wireguard"}`, 422, "wg_endpoint")
	cs = append(cs, badCase{name: "egress-update/unknown-field", method: "PUT", path: "/v1/admin/egress-ips/" + f.egressID, bearer: adm,
		body: `{"lable":"x"}`, status: 400, code: "unknown_field", field: "lable"})
	add("egress-update/unknown-id", "PUT", "/v1/admin/egress-ips/no-such-id", adm, `{"label":"x"}`, 404, "")

	// Hosts.
	host := map[string]any{"user_id": f.aliceID}
	for _, c := range []struct {
		name, field string
		mod         map[string]any
	}{
		{"user-missing", "user_id", map[string]any{"user_id": badDel}},
		{"user-empty", "user_id", map[string]any{"user_id": ""}},
		{"image-bad", "image", map[string]any{"image": "Bad Image"}},
		{"image-shell", "image", map[string]any{"image": "alpine;rm -rf /"}},
		{"image-too-long", "image", map[string]any{"image": strings.Repeat("a", 256)}},
		{"cpu-low", "cpu", map[string]any{"cpu": 0.05}},
		{"cpu-zero", "cpu", map[string]any{"cpu": 0}},
		{"cpu-negative", "cpu", map[string]any{"cpu": -1}},
		{"cpu-high", "cpu", map[string]any{"cpu": 16.5}},
		{"memory-low", "memory_mb", map[string]any{"memory_mb": 127}},
		{"memory-high", "memory_mb", map[string]any{"memory_mb": 65537}},
		{"memory-negative", "memory_mb", map[string]any{"memory_mb": -1024}},
		{"pids-low", "pids", map[string]any{"pids": 63}},
		{"pids-high", "pids", map[string]any{"pids": 32769}},
		{"pids-zero", "pids", map[string]any{"pids": 0}},
	} {
		add("host/"+c.name, "POST", "/v1/admin/hosts", adm, badWith(host, c.mod), 422, c.field)
	}
	cs = append(cs,
		badCase{name: "host/memory-fraction", method: "POST", path: "/v1/admin/hosts", bearer: adm, body: `{"user_id":"` + f.aliceID + `","memory_mb":512.5}`, status: 400, code: "wrong_type", field: "memory_mb"},
		badCase{name: "host/unknown-user", method: "POST", path: "/v1/admin/hosts", bearer: adm, body: map[string]any{"user_id": "no-such-user"}, status: 404, code: "not_found"},
		badCase{name: "host/unknown-egress", method: "POST", path: "/v1/admin/hosts", bearer: adm, body: map[string]any{"user_id": f.aliceID, "egress_ip_id": "no-such-egress"}, status: 404, code: "not_found"},
	)

	// Bindings.
	add("binding/host-missing", "POST", "/v1/admin/bindings", adm, map[string]any{"egress_ip_id": f.egressID}, 422, "host_id")
	add("binding/egress-missing", "POST", "/v1/admin/bindings", adm, map[string]any{"host_id": f.freeHost}, 422, "egress_ip_id")
	cs = append(cs,
		badCase{name: "binding/unknown-host", method: "POST", path: "/v1/admin/bindings", bearer: adm, body: map[string]any{"host_id": "nope", "egress_ip_id": f.egressID}, status: 404, code: "not_found"},
		badCase{name: "binding/unknown-egress", method: "POST", path: "/v1/admin/bindings", bearer: adm, body: map[string]any{"host_id": f.freeHost, "egress_ip_id": "nope"}, status: 404, code: "not_found"},
		badCase{name: "binding/already-bound", method: "POST", path: "/v1/admin/bindings", bearer: adm, body: map[string]any{"host_id": f.hostID, "egress_ip_id": f.egressID}, status: 409, code: "host_already_bound"},
	)

	// Tokens.
	for _, c := range []struct {
		name, field string
		body        map[string]any
	}{
		{"name-missing", "name", map[string]any{}},
		{"name-empty", "name", map[string]any{"name": ""}},
		{"name-blank", "name", map[string]any{"name": "   "}},
		{"name-too-long", "name", map[string]any{"name": strings.Repeat("n", 65)}},
		{"name-control", "name", map[string]any{"name": "a\x01b"}},
		{"inactive", "active", map[string]any{"name": "t2", "active": false}},
		{"days-not-preset", "expires_in_days", map[string]any{"name": "t2", "expires_in_days": 5}},
		{"days-negative", "expires_in_days", map[string]any{"name": "t2", "expires_in_days": -30}},
		{"both-expiries", "expires_at", map[string]any{"name": "t2", "expires_in_days": 30, "expires_at": "2027-01-01"}},
		{"expires-past", "expires_at", map[string]any{"name": "t2", "expires_at": "2020-01-01"}},
		{"expires-today", "expires_at", map[string]any{"name": "t2", "expires_at": "2026-11-23"}},
		{"expires-word", "expires_at", map[string]any{"name": "t2", "expires_at": "tomorrow"}},
		{"expires-number", "expires_at", map[string]any{"name": "t2", "expires_at": 5}},
		{"expires-rfc3339", "expires_at", map[string]any{"name": "t2", "expires_at": "2027-01-01T00:00:00Z"}},
	} {
		add("token/"+c.name, "POST", "/v1/tokens", alice, c.body, 422, c.field)
	}
	cs = append(cs, badCase{name: "token/duplicate-name", method: "POST", path: "/v1/tokens", bearer: alice, body: map[string]any{"name": "ci"}, status: 409, code: "duplicate_token_name"})

	// Change password.
	add("password/new-short", "POST", "/v1/user/change-password", alice, map[string]string{"old_password": "password-alice", "new_password": "short"}, 422, "new_password")
	add("password/new-too-long", "POST", "/v1/user/change-password", alice, map[string]string{"old_password": "password-alice", "new_password": strings.Repeat("x", 73)}, 422, "new_password")
	add("password/new-missing", "POST", "/v1/user/change-password", alice, map[string]string{"old_password": "password-alice"}, 422, "new_password")
	add("password/old-wrong", "POST", "/v1/user/change-password", alice, map[string]string{"old_password": "wrong-password", "new_password": "a-new-password"}, 422, "old_password")
	add("password/old-missing", "POST", "/v1/user/change-password", alice, map[string]string{"new_password": "a-new-password"}, 422, "old_password")

	// Patch user.
	p := "/v1/admin/users/" + f.aliceID
	add("patch/nothing", "PATCH", p, adm, `{}`, 422, "status")
	add("patch/status-unknown", "PATCH", p, adm, map[string]any{"status": "gone"}, 422, "status")
	add("patch/status-expired", "PATCH", p, adm, map[string]any{"status": "expired"}, 422, "status")
	add("patch/status-empty", "PATCH", p, adm, map[string]any{"status": ""}, 422, "status")
	add("patch/role-unknown", "PATCH", p, adm, map[string]any{"role": "root"}, 422, "role")
	add("patch/valid-status-bad-role", "PATCH", p, adm, map[string]any{"status": "disabled", "role": "root"}, 422, "role")
	cs = append(cs,
		badCase{name: "patch/unknown-id", method: "PATCH", path: "/v1/admin/users/no-such-user", bearer: adm, body: `{"status":"disabled"}`, status: 404, code: "not_found"},
		badCase{name: "patch/self-lockout", method: "PATCH", path: "/v1/admin/users/" + e.adminID, bearer: adm, body: `{"status":"disabled"}`, status: 409, code: "self_lockout"},
		badCase{name: "patch/self-demote", method: "PATCH", path: "/v1/admin/users/" + e.adminID, bearer: adm, body: `{"role":"viewer"}`, status: 409, code: "self_lockout"},
	)

	// SSH keys.
	add("key/placeholder", "POST", "/v1/user/ssh-keys", alice, seedAddKeyBody, 422, "public_key")
	add("key/empty", "POST", "/v1/user/ssh-keys", alice, `{"public_key":""}`, 422, "public_key")
	add("key/two-keys", "POST", "/v1/user/ssh-keys", alice, map[string]string{"public_key": "ssh-ed25519 " + seedPublicKey(t) + " a\nssh-ed25519 " + seedPublicKey(t) + " b"}, 422, "public_key")
	add("key/name-too-long", "POST", "/v1/user/ssh-keys", alice, map[string]string{"public_key": "ssh-ed25519 " + seedPublicKey(t), "name": strings.Repeat("n", 101)}, 422, "name")

	// Expiry.
	cs = append(cs, badCase{name: "expiry/wrong-type", method: "PUT", path: "/v1/admin/users/" + f.aliceID + "/expiry", bearer: adm,
		body: `{"expires_at":true}`, status: 400, code: "wrong_type", field: "expires_at"})
	cs = append(cs, badCase{name: "expiry/not-a-time", method: "PUT", path: "/v1/admin/users/" + f.aliceID + "/expiry", bearer: adm,
		body: `{"expires_at":"next week"}`, status: 400, code: "wrong_type", field: "expires_at"})
	cs = append(cs, badCase{name: "user/expires-not-a-time", method: "POST", path: "/v1/admin/users", bearer: adm,
		body: `{"username":"bob","password":"password-bob","expires_at":"31/12/2026"}`, status: 400, code: "wrong_type", field: "expires_at"})

	f.run(t, cs)
	if len(cs) < 100 {
		t.Fatalf("only %d semantic cases", len(cs))
	}
}

// TestBadInputUnknownIDs: every route with an id answers 404 for an id that names nothing,
// and changes nothing.
func TestBadInputUnknownIDs(t *testing.T) {
	f := newBadFixture(t)
	adm, alice := f.e.admin, f.aliceJWT
	const x = "00000000-0000-4000-8000-000000000000"
	validKey := map[string]string{"public_key": "ssh-ed25519 " + seedPublicKey(t)}
	var cs []badCase
	for _, c := range []struct {
		method, path, bearer string
		body                 any
	}{
		{"GET", "/v1/admin/users/" + x, adm, nil},
		{"DELETE", "/v1/admin/users/" + x, adm, nil},
		{"POST", "/v1/admin/users/" + x + "/rotate-password", adm, nil},
		{"PUT", "/v1/admin/users/" + x + "/expiry", adm, `{"expires_at":null}`},
		{"GET", "/v1/admin/users/" + x + "/ssh-keys", adm, nil},
		{"POST", "/v1/admin/users/" + x + "/ssh-keys", adm, validKey},
		{"POST", "/v1/admin/users/" + x + "/ssh-keys/generate", adm, nil},
		{"DELETE", "/v1/admin/users/" + x + "/ssh-keys/" + f.keyID, adm, nil},
		{"DELETE", "/v1/admin/users/" + f.aliceID + "/ssh-keys/" + x, adm, nil},
		{"DELETE", "/v1/user/ssh-keys/" + x, alice, nil},
		{"GET", "/v1/admin/egress-ips/" + x, adm, nil},
		{"PUT", "/v1/admin/egress-ips/" + x, adm, `{"label":"x"}`},
		{"DELETE", "/v1/admin/egress-ips/" + x, adm, nil},
		{"POST", "/v1/admin/egress-ips/" + x + "/test", adm, nil},
		{"GET", "/v1/admin/hosts/" + x, adm, nil},
		{"POST", "/v1/admin/hosts/" + x + "/start", adm, nil},
		{"POST", "/v1/admin/hosts/" + x + "/stop", adm, nil},
		{"POST", "/v1/admin/hosts/" + x + "/rebuild", adm, nil},
		{"POST", "/v1/admin/hosts/" + x + "/rotate-ssh-password", adm, nil},
		{"DELETE", "/v1/admin/hosts/" + x, adm, nil},
		{"DELETE", "/v1/admin/bindings/" + x, adm, nil},
		{"GET", "/v1/user/hosts/" + x, alice, nil},
		{"POST", "/v1/user/hosts/" + x + "/rebuild", alice, nil},
		{"GET", "/v1/user/tasks/" + x, alice, nil},
		{"GET", "/v1/admin/tasks/" + x, adm, nil},
		{"GET", "/v1/tokens/" + x, alice, nil},
		{"PATCH", "/v1/tokens/" + x, alice, `{"name":"x"}`},
		{"DELETE", "/v1/tokens/" + x, alice, nil},
		{"POST", "/v1/tokens/" + x + "/regenerate", alice, nil},
		{"DELETE", "/v1/admin/tokens/" + x, adm, nil},
		// (GET /v1/bootstrap/tasks/:id and its handoff answer 401 to any id without its
		// session's secret: bootstrap_test.go.)
		{"GET", "/entry/not-a-short-id", "", nil},
		// Another user's things are not found, not forbidden.
		{"DELETE", "/v1/user/ssh-keys/" + f.keyID, adm, nil},
		{"GET", "/v1/tokens/" + f.tokenID, adm, nil},
	} {
		cs = append(cs, badCase{name: c.method + c.path, method: c.method, path: c.path, bearer: c.bearer, body: c.body, status: 404})
	}
	f.run(t, cs)
}

func TestBadInputQueryParams(t *testing.T) {
	f := newBadFixture(t)
	adm := f.e.admin
	var cs []badCase
	for _, c := range []struct{ q, field string }{
		{"limit=0", "limit"}, {"limit=abc", "limit"}, {"limit=-1", "limit"}, {"limit=501", "limit"},
		{"limit=1.5", "limit"}, {"limit=99999999999999999999", "limit"},
		{"since=garbage", "since"}, {"since=2026-03-01", "since"}, {"until=yesterday", "until"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"cursor=zz", "cursor"}, {"cursor=abcd", "cursor"}, {"cursor=" + strings.Repeat("0", 200), "cursor"},
	} {
		cs = append(cs, badCase{name: "events/" + c.q, method: "GET", path: "/v1/admin/events?" + c.q, bearer: adm,
			status: 400, code: "invalid_" + c.field, field: c.field})
	}
	cs = append(cs,
		badCase{name: "events/until-before-since", method: "GET", path: "/v1/admin/events?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", bearer: adm, status: 422, field: "until"},
		badCase{name: "tasks/limit", method: "GET", path: "/v1/admin/tasks?limit=abc", bearer: adm, status: 400, code: "invalid_limit", field: "limit"},
		badCase{name: "tasks/limit-zero", method: "GET", path: "/v1/admin/tasks?limit=0", bearer: adm, status: 400, code: "invalid_limit", field: "limit"},
		badCase{name: "hosts/keep-home", method: "DELETE", path: "/v1/admin/hosts/" + f.freeHost + "?keep_home=maybe", bearer: adm, status: 400, code: "invalid_keep_home", field: "keep_home"},
	)
	f.run(t, cs)

	// A valid cursor pages without overlap.
	var p1, p2 app.EventPage
	f.e.do("GET", "/v1/admin/events?limit=2", adm, nil, 200, &p1)
	if p1.NextCursor == "" {
		t.Fatal("no next cursor")
	}
	f.e.do("GET", "/v1/admin/events?limit=2&cursor="+p1.NextCursor, adm, nil, 200, &p2)
	if len(p2.Events) == 0 || p2.Events[0].ID == p1.Events[0].ID || p2.Events[0].ID == p1.Events[1].ID {
		t.Fatalf("pages overlap: %+v %+v", p1, p2)
	}
}

func TestBadInputRoutes(t *testing.T) {
	f := newBadFixture(t)
	e := f.e
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/nope", 404, "route_not_found"},
		{"GET", "/nope", 404, "route_not_found"},
		{"POST", "/v1/admin/users/" + f.aliceID + "/nope", 404, "route_not_found"},
		{"PUT", "/v1/admin/users", 405, "method_not_allowed"},
		{"DELETE", "/v1/auth/login", 405, "method_not_allowed"},
		{"GET", "/v1/auth/login", 405, "method_not_allowed"},
		{"POST", "/healthz", 405, "method_not_allowed"},
		{"PATCH", "/v1/admin/egress-ips/" + f.egressID, 405, "method_not_allowed"},
	} {
		before := f.snapshot()
		r := e.raw(c.method, c.path, e.admin, nil)
		if r.Status != c.status || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s: %d %q %s", c.method, c.path, r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		if code, _ := seedErr(t, r); code != c.code {
			t.Fatalf("%s %s: code %q", c.method, c.path, code)
		}
		if c.status == 405 && r.Header.Get("Allow") == "" {
			t.Fatalf("%s %s: 405 without Allow", c.method, c.path)
		}
		if f.snapshot() != before {
			t.Fatalf("%s %s changed state", c.method, c.path)
		}
	}
}

func TestBadInputRateLimit(t *testing.T) {
	e := newEnv(t, withRateLimit(5))
	// newEnv spent two requests of the budget (login, /v1/auth/me).
	for i := 3; i <= 5; i++ {
		r := e.raw("GET", "/v1/auth/me", e.admin, nil)
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		if r.Header.Get("X-RateLimit-Limit") != "5" || r.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(5-i) ||
			r.Header.Get("X-RateLimit-Reset") == "" {
			t.Fatalf("request %d headers: %v", i, r.Header)
		}
	}
	r := e.raw("GET", "/v1/auth/me", e.admin, nil)
	if r.Status != 429 {
		t.Fatalf("6th request: %d %s", r.Status, r.Body)
	}
	if code, _ := seedErr(t, r); code != "rate_limited" {
		t.Fatalf("6th request body %s", r.Body)
	}
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if r.Header.Get("X-RateLimit-Limit") != "5" || r.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers: %v", r.Header)
	}
	reset, err := strconv.Atoi(r.Header.Get("X-RateLimit-Reset"))
	if err != nil || reset < 1 || reset > 60 {
		t.Fatalf("X-RateLimit-Reset %q", r.Header.Get("X-RateLimit-Reset"))
	}
	// Public, unauthenticated and bad requests are limited too.
	for _, c := range []struct{ method, path string }{{"POST", "/v1/auth/login"}, {"GET", "/v1/nope"}, {"GET", "/v1/bootstrap/script"}} {
		if r := e.raw(c.method, c.path, "", nil); r.Status != 429 {
			t.Fatalf("%s %s while limited: %d", c.method, c.path, r.Status)
		}
	}
	// The health check is exempt.
	for i := 0; i < 10; i++ {
		r := e.raw("GET", "/healthz", "", nil)
		if r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("healthz while limited: %d %v", r.Status, r.Header)
		}
	}
}

func TestBadInputLoginThrottle(t *testing.T) {
	t.Run("throttled-after-five", func(t *testing.T) {
		e := newEnv(t)
		e.user("victim", "user")
		for i := 1; i <= 5; i++ {
			path := "/v1/auth/login"
			if i%2 == 0 {
				path = "/v1/admin/login" // the legacy path shares the throttle
			}
			r := e.raw("POST", path, "", map[string]string{"username": "victim", "password": "wrong-" + strconv.Itoa(i)})
			if r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i, r.Status, r.Body)
			}
		}
		for _, pw := range []string{"wrong-again", "password-victim"} {
			r := e.raw("POST", "/v1/auth/login", "", map[string]string{"username": "victim", "password": pw})
			if r.Status != 429 {
				t.Fatalf("attempt after 5 failures (%s): %d %s", pw, r.Status, r.Body)
			}
			if code, _ := seedErr(t, r); code != "too_many_attempts" {
				t.Fatalf("throttled body %s", r.Body)
			}
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
			}
		}
		// Bootstrap logins share the throttle.
		r := e.raw("POST", "/v1/bootstrap/sessions", "", map[string]string{"username": "victim", "password": "password-victim"})
		if r.Status != 429 {
			t.Fatalf("bootstrap while throttled: %d %s", r.Status, r.Body)
		}
		var page app.EventPage
		e.do("GET", "/v1/admin/events?type=auth.login&limit=500", e.admin, nil, 200, &page)
		failures, denied, successes := 0, 0, 0
		for _, ev := range page.Events {
			if ev.ActorName != "victim" {
				continue
			}
			switch ev.Result {
			case app.ResultFailure:
				failures++
				if ev.SourceIP != "127.0.0.1" || ev.UserID == "" {
					t.Fatalf("failure event %+v", ev)
				}
			case app.ResultDenied:
				denied++
			case app.ResultSuccess:
				successes++
			}
		}
		// One success: the login e.user made before the attack.
		// The two throttled attempts fall in one back-off window: one event, not one each.
		if failures != 5 || denied != 1 || successes != 1 {
			t.Fatalf("auth.login events: %d failures, %d denied, %d successes; want 5, 1, 1", failures, denied, successes)
		}
		// The back-off runs on the service clock; once it passes, the right password works.
		e.clock.Add(time.Minute)
		e.login("victim", "password-victim")
	})
	t.Run("same-answer-for-unknown-user", func(t *testing.T) {
		e := newEnv(t)
		e.user("known", "user")
		wrong := e.raw("POST", "/v1/auth/login", "", map[string]string{"username": "known", "password": "not-the-password"})
		unknown := e.raw("POST", "/v1/auth/login", "", map[string]string{"username": "nobody-here", "password": "not-the-password"})
		empty := e.raw("POST", "/v1/auth/login", "", map[string]string{"username": "", "password": ""})
		for _, r := range []resp{wrong, unknown, empty} {
			if r.Status != 401 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
		}
		if string(wrong.Body) != string(unknown.Body) || string(wrong.Body) != string(empty.Body) {
			t.Fatalf("answers differ:\n%s\n%s\n%s", wrong.Body, unknown.Body, empty.Body)
		}
		if wrong.Header.Get("WWW-Authenticate") != unknown.Header.Get("WWW-Authenticate") {
			t.Fatal("WWW-Authenticate differs")
		}
		var page app.EventPage
		e.do("GET", "/v1/admin/events?type=auth.login", e.admin, nil, 200, &page)
		n := 0
		for _, ev := range page.Events {
			if ev.Result == app.ResultFailure {
				n++
			}
		}
		if n != 3 {
			t.Fatalf("%d auth.login failure events, want 3", n)
		}
	})
}

// badPanicRuntime panics in Ping, which /healthz calls inside its handler: the seam to
// check that a handler panic reaches the client as a 500 JSON answer, not a dropped
// connection.
type badPanicRuntime struct{ seedRuntime }

func (badPanicRuntime) Ping(context.Context) error { panic("engine exploded with secret 0xdeadbeef") }

type badPanicTunnel struct{ app.NoTunnel }

func (badPanicTunnel) Test(context.Context, app.EgressIP) (app.EgressTestResult, error) {
	panic(fmt.Errorf("tunnel exploded"))
}

func TestBadInputPanicIsA500(t *testing.T) {
	e := newEnv(t, withRuntime(badPanicRuntime{}), withSeedTunnel(badPanicTunnel{}))
	var ev app.EgressView
	e.do("POST", "/v1/admin/egress-ips", e.admin, seedSocksBody, 201, &ev)
	for _, c := range []struct{ method, path, bearer string }{
		{"GET", "/healthz", ""},
		{"POST", "/v1/admin/egress-ips/" + ev.ID + "/test", e.admin},
	} {
		for i := 0; i < 3; i++ { // the server keeps serving after a panic
			r := e.raw(c.method, c.path, c.bearer, nil)
			if r.Status != http.StatusInternalServerError || r.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s: %d %v %s", c.method, c.path, r.Status, r.Header, r.Body)
			}
			if code, _ := seedErr(t, r); code != "internal" {
				t.Fatalf("body %s", r.Body)
			}
			if strings.Contains(string(r.Body), "exploded") || strings.Contains(string(r.Body), "deadbeef") {
				t.Fatalf("panic value leaked: %s", r.Body)
			}
		}
	}
	e.do("GET", "/v1/auth/me", e.admin, nil, 200, nil)
}
