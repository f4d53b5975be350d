package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// ruleErr is a decoded error body: {"error":{"code","message","field"}}.
type ruleErr struct {
	Code, Message, Field string
}

func ruleError(t *testing.T, r resp) ruleErr {
	t.Helper()
	var b struct {
		Error *ruleErr `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || b.Error == nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("not an error body {\"error\":{\"code\",\"message\"}} (%v): %s", err, r.Body)
	}
	return *b.Error
}

// ruleWant checks a status and, for an error, its code, field and a part of its message.
func ruleWant(t *testing.T, r resp, status int, code, field, msgPart string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if code == "" {
		return
	}
	got := ruleError(t, r)
	if got.Code != code || got.Field != field || !strings.Contains(got.Message, msgPart) {
		t.Fatalf("error %+v, want code %q field %q message containing %q", got, code, field, msgPart)
	}
}

// ruleUser reads a user through the API.
func ruleUser(e *env, id string) app.UserView {
	e.t.Helper()
	var u app.UserView
	e.do("GET", "/v1/admin/users/"+id, tokAdmin(e), nil, 200, &u)
	return u
}

// The last active administrator cannot be locked out: every admin route that can disable,
// demote, expire or delete an account refuses to do it to the last active admin (or the
// last one without an expiry) with 409 last_admin, whoever asks, and changes nothing.
func TestLastActiveAdminIsKept(t *testing.T) {
	future := testenv.Epoch.Add(30 * 24 * time.Hour).Format(time.RFC3339)
	past := testenv.Epoch.Add(-time.Hour).Format(time.RFC3339)
	// Co-administrators made before each case; the case acts as actor on target.
	type fixture struct {
		expiring bool // admin2 exists with an expiry and acts
		lasting  bool // admin3 exists without an expiry (a second lasting admin)
		disabled bool // admin4 exists, disabled
		self     bool // the harness admin acts on itself
	}
	cases := []struct {
		name         string
		fx           fixture
		method, path string // path: %s is the target's id
		body         any
		status       int
		code         string
	}{
		// The only admin on itself: the expiry route had no guard at all.
		{"own expiry, only admin", fixture{self: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": future}, 409, string(app.CodeLastAdmin)},
		{"own expiry in the past, only admin", fixture{self: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": past}, 409, string(app.CodeLastAdmin)},
		{"own expiry, disabled co-admin does not count", fixture{self: true, disabled: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": future}, 409, string(app.CodeLastAdmin)},
		{"own expiry cleared, only admin", fixture{self: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": nil}, 200, ""},
		// An administrator with an expiry acting on the last one without: after that day
		// nobody could administer the server.
		{"disable", fixture{expiring: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"status": "disabled"}, 409, string(app.CodeLastAdmin)},
		{"demote to viewer", fixture{expiring: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"role": "viewer"}, 409, string(app.CodeLastAdmin)},
		{"demote to user", fixture{expiring: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"role": "user"}, 409, string(app.CodeLastAdmin)},
		{"disable and demote", fixture{expiring: true, disabled: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"status": "disabled", "role": "user"}, 409, string(app.CodeLastAdmin)},
		{"expire", fixture{expiring: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": future}, 409, string(app.CodeLastAdmin)},
		{"delete", fixture{expiring: true}, "DELETE", "/v1/admin/users/%s", nil, 409, string(app.CodeLastAdmin)},
		// With a second administrator without an expiry, the same changes are allowed.
		{"disable, another admin remains", fixture{expiring: true, lasting: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"status": "disabled"}, 200, ""},
		{"demote, another admin remains", fixture{expiring: true, lasting: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"role": "viewer"}, 200, ""},
		{"expire, another admin remains", fixture{expiring: true, lasting: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": future}, 200, ""},
		{"delete, another admin remains", fixture{expiring: true, lasting: true}, "DELETE", "/v1/admin/users/%s", nil, 204, ""},
		{"own expiry, another admin remains", fixture{self: true, lasting: true}, "PUT", "/v1/admin/users/%s/expiry", map[string]any{"expires_at": future}, 200, ""},
		// Disabling or deleting oneself keeps its own, earlier refusal.
		{"disable self", fixture{self: true, lasting: true}, "PATCH", "/v1/admin/users/%s", map[string]any{"status": "disabled"}, 409, "self_lockout"},
		{"delete self", fixture{self: true, lasting: true}, "DELETE", "/v1/admin/users/%s", nil, 409, "self_delete"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			mk := func(name string, extra map[string]any) string {
				body := map[string]any{"username": name, "password": "password-" + name, "role": "admin"}
				for k, v := range extra {
					body[k] = v
				}
				var u app.UserView
				e.do("POST", "/v1/admin/users", e.admin, body, 201, &u)
				return u.ID
			}
			actor := e.admin
			if c.fx.expiring {
				mk("admin2", map[string]any{"expires_at": future})
				actor = e.login("admin2", "password-admin2")
			}
			if c.fx.lasting {
				mk("admin3", nil)
			}
			if c.fx.disabled {
				id := mk("admin4", nil)
				e.do("PATCH", "/v1/admin/users/"+id, e.admin, map[string]any{"status": "disabled"}, 200, nil)
			}
			before := ruleUser(e, e.adminID)
			r := e.raw(c.method, strings.ReplaceAll(c.path, "%s", e.adminID), actor, c.body)
			ruleWant(t, r, c.status, c.code, "", "")
			if c.code == string(app.CodeLastAdmin) {
				if msg := ruleError(t, r).Message; !strings.Contains(msg, `"admin"`) || !strings.Contains(msg, "last active administrator") {
					t.Errorf("message %q does not say who is the last active administrator", msg)
				}
			}
			if c.status != 409 {
				return
			}
			after := ruleUser(e, e.adminID)
			if after.Status != before.Status || after.Role != before.Role || (after.ExpiresAt == nil) != (before.ExpiresAt == nil) {
				t.Errorf("a refused change changed the account: %+v -> %+v", before, after)
			}
			tokWorks(e, e.login("admin", "admin-password"), "the kept administrator")
		})
	}
}

// A user created with an expiry that has already passed is refused with 422.
func TestCreateUserExpiryInThePast(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name      string
		expiresAt any // absent when nil
		status    int
	}{
		{"a year ago", testenv.Epoch.AddDate(-1, 0, 0).Format(time.RFC3339), 422},
		{"a second ago", testenv.Epoch.Add(-time.Second).Format(time.RFC3339), 422},
		{"now", testenv.Epoch.Format(time.RFC3339), 422},
		{"a second ahead", testenv.Epoch.Add(time.Second).Format(time.RFC3339), 201},
		{"the reference's date", "2026-12-31T23:59:59Z", 201},
		{"no expiry", nil, 201},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := tokAs(e, t)
			name := "user" + string(rune('a'+i))
			body := map[string]any{"username": name, "password": "min-8-chars"}
			if c.expiresAt != nil {
				body["expires_at"] = c.expiresAt
			}
			r := e.raw("POST", "/v1/admin/users", e.admin, body)
			if c.status == 422 {
				ruleWant(t, r, 422, "invalid_expires_at", "expires_at", "future")
				var l struct{ Users []app.UserView }
				e.do("GET", "/v1/admin/users", e.admin, nil, 200, &l)
				for _, u := range l.Users {
					if u.Username == name {
						t.Errorf("refused user was created: %+v", u)
					}
				}
				return
			}
			ruleWant(t, r, c.status, "", "", "")
		})
	}
}

// PUT …/expiry clears an expiry only when told so with "expires_at": null; a body without
// the key is refused and changes nothing.
func TestSetExpiryNeedsExplicitNull(t *testing.T) {
	e := newEnv(t)
	uid, _ := e.user("alice", app.RoleUser)
	set := "2027-06-30T12:00:00Z"
	setAt, _ := time.Parse(time.RFC3339, set)
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		want   *time.Time // the expiry after the request
	}{
		{"empty object", `{}`, 422, "invalid_expires_at", &setAt},
		{"other key only", `{"expires":null}`, 400, "unknown_field", &setAt},
		{"explicit null clears", `{"expires_at":null}`, 200, "", nil},
		{"a time sets", `{"expires_at":"2027-06-30T12:00:00Z"}`, 200, "", &setAt},
		{"an offset time is stored in UTC", `{"expires_at":"2027-06-30T14:00:00+02:00"}`, 200, "", &setAt},
		{"not a time", `{"expires_at":"next week"}`, 400, "wrong_type", &setAt},
		{"no body", ``, 400, "empty_body", &setAt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := tokAs(e, t)
			e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": set}, 200, nil)
			r := e.raw("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, c.body)
			switch c.code {
			case "invalid_expires_at":
				ruleWant(t, r, c.status, c.code, "expires_at", "null")
			default:
				ruleWant(t, r, c.status, c.code, expiryDecodeField(c.code), "")
			}
			if got := ruleUser(e, uid).ExpiresAt; !tokSameTime(got, c.want) {
				t.Errorf("expires_at = %s, want %s", tokFmt(got), tokFmt(c.want))
			}
		})
	}
}

// expiryDecodeField is the field a decoding error of the expiry body names.
func expiryDecodeField(code string) string {
	switch code {
	case "unknown_field":
		return "expires"
	case "wrong_type":
		return "expires_at"
	}
	return ""
}

// Names refuse control characters wherever a client names something (access tokens and SSH
// keys alike), and every length limit counts characters, not bytes.
func TestNamesAndLengthsInCharacters(t *testing.T) {
	e := newEnv(t)
	aliceID, alice := e.user("alice", app.RoleUser)
	key := func(t *testing.T, name string) map[string]any {
		return map[string]any{"public_key": "ssh-ed25519 " + seedPublicKey(t) + " alice@laptop", "name": name}
	}
	cases := []struct {
		name   string
		method string
		path   string
		bearer string
		body   func(t *testing.T) map[string]any
		status int
		field  string
	}{
		// SSH key names, on the user's own route and the admin's.
		{"key name with a newline", "POST", "/v1/user/ssh-keys", alice, func(t *testing.T) map[string]any { return key(t, "lap\ntop") }, 422, "name"},
		{"key name with a tab", "POST", "/v1/user/ssh-keys", alice, func(t *testing.T) map[string]any { return key(t, "lap\ttop") }, 422, "name"},
		{"key name with DEL", "POST", "/v1/user/ssh-keys", alice, func(t *testing.T) map[string]any { return key(t, "lap\x7ftop") }, 422, "name"},
		{"key name with a C1 control", "POST", "/v1/user/ssh-keys", alice, func(t *testing.T) map[string]any { return key(t, "lap\u0085top") }, 422, "name"},
		{"key name with an escape, admin route", "POST", "/v1/admin/users/" + aliceID + "/ssh-keys", e.admin, func(t *testing.T) map[string]any { return key(t, "\x1b[31mred") }, 422, "name"},
		{"key name of 100 two-byte characters", "POST", "/v1/user/ssh-keys", alice, func(t *testing.T) map[string]any { return key(t, strings.Repeat("é", 100)) }, 201, ""},
		{"key name of 101 characters", "POST", "/v1/user/ssh-keys", alice, func(t *testing.T) map[string]any { return key(t, strings.Repeat("é", 101)) }, 422, "name"},
		{"key name of 100 four-byte characters, admin route", "POST", "/v1/admin/users/" + aliceID + "/ssh-keys", e.admin, func(t *testing.T) map[string]any { return key(t, strings.Repeat("🔑", 100)) }, 201, ""},
		// Token names.
		{"token name of 64 three-byte characters", "POST", "/v1/tokens", alice, func(*testing.T) map[string]any { return map[string]any{"name": strings.Repeat("日", 64)} }, 201, ""},
		{"token name of 65 characters", "POST", "/v1/tokens", alice, func(*testing.T) map[string]any { return map[string]any{"name": strings.Repeat("日", 65)} }, 422, "name"},
		{"token name with a C1 control", "POST", "/v1/tokens", alice, func(*testing.T) map[string]any { return map[string]any{"name": "ci\u009bdeploy"} }, 422, "name"},
		// Passwords: at least 8 characters, however many bytes they take.
		{"password of 7 two-byte characters", "POST", "/v1/admin/users", e.admin, func(*testing.T) map[string]any {
			return map[string]any{"username": "bob", "password": strings.Repeat("ä", 7)}
		}, 422, "password"},
		{"password of 8 two-byte characters", "POST", "/v1/admin/users", e.admin, func(*testing.T) map[string]any {
			return map[string]any{"username": "carol", "password": strings.Repeat("ä", 8)}
		}, 201, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := tokAs(e, t)
			r := e.raw(c.method, c.path, c.bearer, c.body(t))
			if c.status != 422 {
				ruleWant(t, r, c.status, "", "", "")
				return
			}
			ruleWant(t, r, 422, "invalid_"+c.field, c.field, c.field)
		})
	}
	// A key whose comment carries control characters is accepted, named without them.
	var k app.SSHKey
	e.do("POST", "/v1/user/ssh-keys", alice, map[string]any{"public_key": "ssh-ed25519 " + seedPublicKey(t) + " alice\x01@laptop"}, 201, &k)
	if k.Name != "alice @laptop" {
		t.Errorf("key named %q from a comment with a control character", k.Name)
	}
}

// /healthz reports the engine under the API reference's name, agent, and keeps docker.
func TestHealthzAgentCheck(t *testing.T) {
	cases := []struct {
		name       string
		rt         app.Runtime
		status     string
		engineOK   bool
		httpStatus int
	}{
		{"engine up", seedRuntime{}, "ok", true, 200},
		{"engine down", app.NoRuntime{}, "degraded", false, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, withRuntime(c.rt))
			var h struct {
				Status string
				Checks map[string]string
			}
			e.do("GET", "/healthz", "", nil, c.httpStatus, &h)
			if h.Status != c.status || h.Checks["database"] != "ok" {
				t.Fatalf("healthz %+v", h)
			}
			if (h.Checks["agent"] == "ok") != c.engineOK || h.Checks["agent"] == "" {
				t.Errorf("agent check %q", h.Checks["agent"])
			}
			if h.Checks["docker"] != h.Checks["agent"] {
				t.Errorf("docker alias %q differs from agent %q", h.Checks["docker"], h.Checks["agent"])
			}
		})
	}
}
