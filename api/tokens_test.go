package api_test

// Tests of the access-token feature ("Access tokens for automation"), through the REST API.
// Helpers here are prefixed tok so they do not collide with other files of the package.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// tokGenericMessage is the one message of every 401.
const tokGenericMessage = "invalid or missing credentials"

// tokStart is the harness clock's start; tokDay(n) is 00:00 UTC n days after its date.
var tokStart = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func tokDate(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// withLogOutput sends the service's and the REST door's log, at debug level, to w.
func withLogOutput(w io.Writer) envOption {
	return func(_ *app.Config, d *app.Deps, _ *api.Config) {
		d.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// tokAs is e reporting to t (for subtests sharing one env).
func tokAs(e *env, t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func tokNoStore(t *testing.T, r resp) {
	t.Helper()
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// tokCreate makes a token with bearer and checks the once-shown answer.
func tokCreate(e *env, bearer string, body map[string]any) app.CreatedToken {
	e.t.Helper()
	var out app.CreatedToken
	r := e.do("POST", "/v1/tokens", bearer, body, 201, &out)
	tokNoStore(e.t, r)
	if !strings.HasPrefix(out.Token, app.TokenPrefix) || !app.WellFormedToken(out.Token) {
		e.t.Fatalf("created token value %q is not well formed", out.Token)
	}
	if want := "…" + out.Token[len(out.Token)-4:]; out.Hint != want {
		e.t.Errorf("hint = %q, want %q", out.Hint, want)
	}
	if out.ID == "" || !out.Active {
		e.t.Errorf("created token: %+v", out.TokenView)
	}
	return out
}

// tokWant401 checks the one generic answer to every rejected credential.
func tokWant401(t *testing.T, r resp, what string) {
	t.Helper()
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s: status %d, want 401; body %s", what, r.Status, r.Body)
	}
	if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, `error="invalid_token"`) {
		t.Errorf("%s: WWW-Authenticate = %q", what, h)
	}
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &b)
	if b.Error.Code != "unauthenticated" || b.Error.Message != tokGenericMessage {
		t.Errorf("%s: error = %+v, want the generic one", what, b.Error)
	}
}

// tokWantScope checks a 403 insufficient_scope answer.
func tokWantScope(t *testing.T, r resp, what string) {
	t.Helper()
	if r.Status != http.StatusForbidden || r.errCode() != "insufficient_scope" {
		t.Fatalf("%s: %d %s, want 403 insufficient_scope", what, r.Status, r.Body)
	}
	if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
		t.Errorf("%s: WWW-Authenticate = %q", what, h)
	}
}

func tokWantStatus(t *testing.T, r resp, status int, code, what string) {
	t.Helper()
	if r.Status != status || (code != "" && r.errCode() != code) {
		t.Fatalf("%s: %d %s, want %d %s", what, r.Status, r.Body, status, code)
	}
}

// tokWorks checks that bearer is accepted right now.
func tokWorks(e *env, bearer, what string) {
	e.t.Helper()
	if r := e.raw("GET", "/v1/auth/me", bearer, nil); r.Status != 200 {
		e.t.Fatalf("%s: GET /v1/auth/me = %d %s, want 200", what, r.Status, r.Body)
	}
}

func tokRejected(e *env, bearer, what string) {
	e.t.Helper()
	tokWant401(e.t, e.raw("GET", "/v1/auth/me", bearer, nil), what)
}

// tokAdmin logs the admin in afresh (the clock may have moved past the harness JWT).
func tokAdmin(e *env) string {
	e.t.Helper()
	return e.login("admin", "admin-password")
}

// tokEvents returns every audit event (newest first) and the raw response body.
func tokEvents(e *env) ([]app.Event, []byte) {
	e.t.Helper()
	var page app.EventPage
	r := e.do("GET", "/v1/admin/events?limit=500", tokAdmin(e), nil, 200, &page)
	if page.NextCursor != "" {
		e.t.Fatalf("more than 500 events; the test expects one page")
	}
	return page.Events, r.Body
}

func tokFindEvent(evs []app.Event, match func(app.Event) bool) (app.Event, bool) {
	for _, ev := range evs {
		if match(ev) {
			return ev, true
		}
	}
	return app.Event{}, false
}

func tokGet(e *env, bearer, id string) app.TokenView {
	e.t.Helper()
	var v app.TokenView
	e.do("GET", "/v1/tokens/"+id, bearer, nil, 200, &v)
	return v
}

func tokList(e *env, bearer string) []app.TokenView {
	e.t.Helper()
	var out struct{ Tokens []app.TokenView }
	e.do("GET", "/v1/tokens", bearer, nil, 200, &out)
	return out.Tokens
}

func tokSameTime(a *time.Time, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func tokFmt(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Each preset, a custom date, the default and "never": expires_at is 00:00 UTC of the
// day, the token works 1ns before it and is refused at it.
func TestTokenExpiry(t *testing.T) {
	cases := []struct {
		name string
		body map[string]any
		want string // expiry date; "" for never
	}{
		{"preset 7 days", map[string]any{"expires_in_days": 7}, "2026-11-30"},
		{"preset 30 days", map[string]any{"expires_in_days": 30}, "2026-12-23"},
		{"preset 60 days", map[string]any{"expires_in_days": 60}, "2027-01-22"},
		{"preset 90 days", map[string]any{"expires_in_days": 90}, "2027-02-21"},
		{"custom date", map[string]any{"expires_at": "2027-03-15"}, "2027-03-15"},
		{"custom date tomorrow", map[string]any{"expires_at": "2026-11-24"}, "2026-11-24"},
		{"default is 30 days", map[string]any{}, "2026-12-23"},
		{"never", map[string]any{"expires_at": "never"}, ""},
		{"null means never", map[string]any{"expires_at": nil}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, jwt := e.user("alice", app.RoleUser)
			body := map[string]any{"name": "ci"}
			for k, v := range tc.body {
				body[k] = v
			}
			tok := tokCreate(e, jwt, body)
			if tc.want == "" {
				if tok.ExpiresAt != nil {
					t.Fatalf("expires_at = %s, want null", tokFmt(tok.ExpiresAt))
				}
				e.clock.Set(tokStart.AddDate(100, 0, 0))
				tokWorks(e, tok.Token, "never-expiring token a century later")
				jwt = e.login("alice", "password-alice")
				if v := tokGet(e, jwt, tok.ID); v.Expired || v.ExpiresAt != nil {
					t.Errorf("view %+v", v)
				}
				return
			}
			d := tokDate(tc.want)
			if tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(d) || tok.ExpiresAt.Location() != time.UTC {
				t.Fatalf("expires_at = %s, want %s", tokFmt(tok.ExpiresAt), d.Format(time.RFC3339))
			}
			tokWorks(e, tok.Token, "fresh token")
			e.clock.Set(d.Add(-time.Nanosecond))
			tokWorks(e, tok.Token, "1ns before the expiry day")
			jwt = e.login("alice", "password-alice")
			if v := tokGet(e, jwt, tok.ID); v.Expired {
				t.Errorf("expired = true 1ns before expiry")
			}
			e.clock.Set(d)
			tokRejected(e, tok.Token, "at 00:00:00 UTC of the expiry day")
			tokWant401(t, e.raw("GET", "/v1/tokens", tok.Token, nil), "listing with an expired token")
			jwt = e.login("alice", "password-alice")
			if v := tokGet(e, jwt, tok.ID); !v.Expired || !v.Active {
				t.Errorf("after expiry: expired=%v active=%v, want true, true", v.Expired, v.Active)
			}
		})
	}
}

func TestTokenExpiryInputRejected(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	cases := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"preset not offered", map[string]any{"expires_in_days": 14}, 422, "invalid_expires_in_days"},
		{"zero days", map[string]any{"expires_in_days": 0}, 422, "invalid_expires_in_days"},
		{"negative days", map[string]any{"expires_in_days": -7}, 422, "invalid_expires_in_days"},
		{"both forms", map[string]any{"expires_in_days": 7, "expires_at": "2027-01-01"}, 422, "invalid_expires_at"},
		{"today", map[string]any{"expires_at": "2026-11-23"}, 422, "invalid_expires_at"},
		{"past date", map[string]any{"expires_at": "2026-01-01"}, 422, "invalid_expires_at"},
		{"timestamp instead of date", map[string]any{"expires_at": "2026-11-30T00:00:00Z"}, 422, "invalid_expires_at"},
		{"words", map[string]any{"expires_at": "soon"}, 422, "invalid_expires_at"},
		{"empty string", map[string]any{"expires_at": ""}, 422, "invalid_expires_at"},
		{"impossible date", map[string]any{"expires_at": "2027-02-30"}, 422, "invalid_expires_at"},
		{"number", map[string]any{"expires_at": 1798761600000}, 422, "invalid_expires_at"},
		{"days as string", map[string]any{"expires_in_days": "7"}, 400, "wrong_type"},
		{"write as string", map[string]any{"write": "yes"}, 400, "wrong_type"},
		{"new token inactive", map[string]any{"active": false}, 422, "invalid_active"},
		{"unknown field", map[string]any{"scopes": []string{"all"}}, 400, "unknown_field"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tokAs(e, t)
			body := map[string]any{"name": fmt.Sprintf("t%d", i)}
			for k, v := range tc.body {
				body[k] = v
			}
			tokWantStatus(t, e.raw("POST", "/v1/tokens", jwt, body), tc.status, tc.code, "create")
		})
	}
	if ts := tokList(e, jwt); len(ts) != 0 {
		t.Errorf("%d tokens were created by refused requests", len(ts))
	}
}

// With an operator maximum lifetime, "never" and too-far dates are 422, on create and update.
func TestTokenMaxLifetime(t *testing.T) {
	e := newEnv(t, withConfig(func(c *app.Config) { c.TokenMaxLifetime = 60 * 24 * time.Hour }))
	_, jwt := e.user("alice", app.RoleUser)
	create := []struct {
		name   string
		body   map[string]any
		status int
		want   string
	}{
		{"never refused", map[string]any{"expires_at": "never"}, 422, ""},
		{"null refused", map[string]any{"expires_at": nil}, 422, ""},
		{"preset beyond max", map[string]any{"expires_in_days": 90}, 422, ""},
		{"date far beyond max", map[string]any{"expires_at": "2027-06-01"}, 422, ""},
		{"date one day beyond max", map[string]any{"expires_at": "2027-01-23"}, 422, ""},
		{"date at max", map[string]any{"expires_at": "2027-01-22"}, 201, "2027-01-22"},
		{"preset at max", map[string]any{"expires_in_days": 60}, 201, "2027-01-22"},
		{"short preset", map[string]any{"expires_in_days": 7}, 201, "2026-11-30"},
		{"default", map[string]any{}, 201, "2026-12-23"},
	}
	var someID string
	for i, tc := range create {
		t.Run("create/"+tc.name, func(t *testing.T) {
			e := tokAs(e, t)
			body := map[string]any{"name": fmt.Sprintf("t%d", i)}
			for k, v := range tc.body {
				body[k] = v
			}
			r := e.raw("POST", "/v1/tokens", jwt, body)
			if tc.status == 422 {
				tokWantStatus(t, r, 422, "invalid_expires_at", "create")
				return
			}
			tokWantStatus(t, r, tc.status, "", "create")
			var out app.CreatedToken
			r.json(t, &out)
			if want := tokDate(tc.want); out.ExpiresAt == nil || !out.ExpiresAt.Equal(want) {
				t.Errorf("expires_at = %s, want %s", tokFmt(out.ExpiresAt), tc.want)
			}
			someID = out.ID
		})
	}
	update := []struct {
		name   string
		body   map[string]any
		status int
	}{
		{"to never", map[string]any{"expires_at": "never"}, 422},
		{"to null", map[string]any{"expires_at": nil}, 422},
		{"beyond max", map[string]any{"expires_in_days": 90}, 422},
		{"within max", map[string]any{"expires_in_days": 30}, 200},
		{"rename only", map[string]any{"name": "renamed"}, 200},
	}
	for _, tc := range update {
		t.Run("update/"+tc.name, func(t *testing.T) {
			r := tokAs(e, t).raw("PATCH", "/v1/tokens/"+someID, jwt, tc.body)
			code := ""
			if tc.status == 422 {
				code = "invalid_expires_at"
			}
			tokWantStatus(t, r, tc.status, code, "update")
		})
	}
}

// DELETE revokes: the very next request with the value is 401.
func TestTokenRevoke(t *testing.T) {
	cases := []struct {
		name string
		by   func(jwt, self, sibling string) string
	}{
		{"by the user's session", func(jwt, _, _ string) string { return jwt }},
		{"by the token itself", func(_, self, _ string) string { return self }},
		{"by another write token", func(_, _, sibling string) string { return sibling }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
			sib := tokCreate(e, jwt, map[string]any{"name": "sibling"})
			tokWorks(e, tok.Token, "before revocation")
			e.do("DELETE", "/v1/tokens/"+tok.ID, tc.by(jwt, tok.Token, sib.Token), nil, 204, nil)
			tokRejected(e, tok.Token, "revoked token")
			tokWant401(t, e.raw("POST", "/v1/tokens", tok.Token, map[string]any{"name": "x"}), "revoked token, mutation")
			tokWantStatus(t, e.raw("GET", "/v1/tokens/"+tok.ID, jwt, nil), 404, "not_found", "get revoked")
			tokWantStatus(t, e.raw("DELETE", "/v1/tokens/"+tok.ID, jwt, nil), 404, "not_found", "revoke twice")
			for _, v := range tokList(e, jwt) {
				if v.ID == tok.ID {
					t.Errorf("revoked token still listed")
				}
			}
			tokWorks(e, sib.Token, "sibling token")
			// The name is free again.
			tokCreate(e, jwt, map[string]any{"name": "ci"})
		})
	}
}

// Regenerate: new value works, the old one is dead at once, settings are kept.
func TestTokenRegenerate(t *testing.T) {
	cases := []struct {
		name  string
		write bool
		by    string // jwt, self, sibling
	}{
		{"write token by session", true, "jwt"},
		{"read-only token by session", false, "jwt"},
		{"write token by itself", true, "self"},
		{"write token by a sibling", true, "sibling"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "ci", "write": tc.write, "expires_in_days": 60})
			sib := tokCreate(e, jwt, map[string]any{"name": "sibling", "expires_in_days": 90})
			by := map[string]string{"jwt": jwt, "self": tok.Token, "sibling": sib.Token}[tc.by]
			tokWorks(e, tok.Token, "before")
			var out app.CreatedToken
			r := e.do("POST", "/v1/tokens/"+tok.ID+"/regenerate", by, nil, 200, &out)
			tokNoStore(t, r)
			if r.Header.Get("Pragma") != "no-cache" {
				t.Errorf("Pragma = %q", r.Header.Get("Pragma"))
			}
			if out.Token == tok.Token || !app.WellFormedToken(out.Token) {
				t.Fatalf("regenerated value %q", out.Token)
			}
			if out.ID != tok.ID || out.Name != "ci" || out.Write != tc.write || !tokSameTime(out.ExpiresAt, tok.ExpiresAt) || !out.Active {
				t.Errorf("settings changed: %+v, was %+v", out.TokenView, tok.TokenView)
			}
			if want := "…" + out.Token[len(out.Token)-4:]; out.Hint != want {
				t.Errorf("hint %q, want %q", out.Hint, want)
			}
			tokRejected(e, tok.Token, "old value right after regenerate")
			tokWorks(e, out.Token, "new value")
			if v := tokGet(e, jwt, tok.ID); v.Hint != out.Hint {
				t.Errorf("stored hint %q, want %q", v.Hint, out.Hint)
			}
		})
	}
}

// PATCH active=false stops the token on the next request; active=true brings it back.
func TestTokenActiveToggle(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
	steps := []struct {
		active bool
		works  bool
	}{{false, false}, {true, true}, {false, false}, {true, true}}
	for i, st := range steps {
		var v app.TokenView
		e.do("PATCH", "/v1/tokens/"+tok.ID, jwt, map[string]any{"active": st.active}, 200, &v)
		if v.Active != st.active {
			t.Fatalf("step %d: active = %v", i, v.Active)
		}
		if st.works {
			tokWorks(e, tok.Token, fmt.Sprintf("step %d, reactivated", i))
		} else {
			tokRejected(e, tok.Token, fmt.Sprintf("step %d, deactivated", i))
		}
	}
}

// PATCH: rename, name clashes, lowering write (never raising it), expiry changes.
func TestTokenPatch(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	_, bob := e.user("bobby", app.RoleUser)
	tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
	tokCreate(e, jwt, map[string]any{"name": "other"})
	steps := []struct {
		name   string
		bearer string
		id     string
		body   any
		status int
		code   string
		check  func(t *testing.T, v app.TokenView)
	}{
		{"rename", jwt, tok.ID, map[string]any{"name": "  deploy  "}, 200, "", func(t *testing.T, v app.TokenView) {
			if v.Name != "deploy" {
				t.Errorf("name %q", v.Name)
			}
		}},
		{"rename to a taken name", jwt, tok.ID, map[string]any{"name": "other"}, 409, "duplicate_token_name", nil},
		{"empty name", jwt, tok.ID, map[string]any{"name": " "}, 422, "invalid_name", nil},
		{"name too long", jwt, tok.ID, map[string]any{"name": strings.Repeat("n", 65)}, 422, "invalid_name", nil},
		{"control character", jwt, tok.ID, map[string]any{"name": "a\nb"}, 422, "invalid_name", nil},
		{"write true on a write token", jwt, tok.ID, map[string]any{"write": true}, 200, "", func(t *testing.T, v app.TokenView) {
			if !v.Write {
				t.Errorf("write lowered")
			}
		}},
		{"lower write", jwt, tok.ID, map[string]any{"write": false}, 200, "", func(t *testing.T, v app.TokenView) {
			if v.Write {
				t.Errorf("write still true")
			}
		}},
		{"raise write", jwt, tok.ID, map[string]any{"write": true}, 422, "invalid_write", nil},
		{"raise write with other changes", jwt, tok.ID, map[string]any{"write": true, "name": "x"}, 422, "invalid_write", nil},
		{"preset expiry", jwt, tok.ID, map[string]any{"expires_in_days": 7}, 200, "", func(t *testing.T, v app.TokenView) {
			if v.ExpiresAt == nil || !v.ExpiresAt.Equal(tokDate("2026-11-30")) {
				t.Errorf("expires_at %s", tokFmt(v.ExpiresAt))
			}
		}},
		{"custom expiry", jwt, tok.ID, map[string]any{"expires_at": "2027-05-01"}, 200, "", func(t *testing.T, v app.TokenView) {
			if v.ExpiresAt == nil || !v.ExpiresAt.Equal(tokDate("2027-05-01")) {
				t.Errorf("expires_at %s", tokFmt(v.ExpiresAt))
			}
		}},
		{"never", jwt, tok.ID, map[string]any{"expires_at": "never"}, 200, "", func(t *testing.T, v app.TokenView) {
			if v.ExpiresAt != nil {
				t.Errorf("expires_at %s", tokFmt(v.ExpiresAt))
			}
		}},
		{"past expiry", jwt, tok.ID, map[string]any{"expires_at": "2026-01-01"}, 422, "invalid_expires_at", nil},
		{"empty patch keeps everything", jwt, tok.ID, map[string]any{}, 200, "", func(t *testing.T, v app.TokenView) {
			if v.Name != "deploy" || v.Write || v.ExpiresAt != nil || !v.Active {
				t.Errorf("changed: %+v", v)
			}
		}},
		{"unknown field", jwt, tok.ID, map[string]any{"scope": "admin"}, 400, "unknown_field", nil},
		{"unknown id", jwt, "00000000-0000-0000-0000-000000000000", map[string]any{"name": "x"}, 404, "not_found", nil},
		{"another user's token", bob, tok.ID, map[string]any{"name": "stolen"}, 404, "not_found", nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := tokAs(e, t).raw("PATCH", "/v1/tokens/"+st.id, st.bearer, st.body)
			tokWantStatus(t, r, st.status, st.code, "patch")
			if st.check != nil {
				var v app.TokenView
				r.json(t, &v)
				st.check(t, v)
			}
		})
	}
	// The lowered token is read-only from the next request on.
	tokWantScope(t, e.raw("POST", "/v1/tokens", tok.Token, map[string]any{"name": "x", "write": false}), "lowered token")
	if v := tokGet(e, jwt, tok.ID); v.Name != "deploy" || v.Write {
		t.Errorf("final state %+v", v)
	}
}

// A read-only token may read everything its user may read and mutate nothing.
func TestTokenReadOnlyMatrix(t *testing.T) {
	e := newEnv(t)
	uid, jwt := e.user("alice", app.RoleUser)
	ro := tokCreate(e, jwt, map[string]any{"name": "ro", "write": false})
	rw := tokCreate(e, jwt, map[string]any{"name": "rw"})
	aro := tokCreate(e, e.admin, map[string]any{"name": "admin-ro", "write": false})
	reads := []struct {
		bearer, path string
	}{
		{ro.Token, "/v1/auth/me"},
		{ro.Token, "/v1/tokens"},
		{ro.Token, "/v1/tokens/" + ro.ID},
		{ro.Token, "/v1/tokens/" + rw.ID},
		{ro.Token, "/v1/user/hosts"},
		{ro.Token, "/v1/user/ssh-keys"},
		{ro.Token, "/_/token"},
		{aro.Token, "/v1/admin/users"},
		{aro.Token, "/v1/admin/users/" + uid},
		{aro.Token, "/v1/admin/tokens"},
		{aro.Token, "/v1/admin/events"},
		{aro.Token, "/v1/admin/dashboard/stats"},
	}
	for _, c := range reads {
		t.Run("GET "+c.path, func(t *testing.T) {
			tokWantStatus(t, tokAs(e, t).raw("GET", c.path, c.bearer, nil), 200, "", "read with a read-only token")
		})
	}
	writes := []struct {
		name, method, path string
		bearer             string
		body               any
	}{
		{"create write token", "POST", "/v1/tokens", ro.Token, map[string]any{"name": "w", "write": true}},
		{"create read-only token", "POST", "/v1/tokens", ro.Token, map[string]any{"name": "r", "write": false}},
		{"rename itself", "PATCH", "/v1/tokens/" + ro.ID, ro.Token, map[string]any{"name": "renamed"}},
		{"deactivate a sibling", "PATCH", "/v1/tokens/" + rw.ID, ro.Token, map[string]any{"active": false}},
		{"revoke a sibling", "DELETE", "/v1/tokens/" + rw.ID, ro.Token, nil},
		{"regenerate itself", "POST", "/v1/tokens/" + ro.ID + "/regenerate", ro.Token, nil},
		{"regenerate a sibling", "POST", "/v1/tokens/" + rw.ID + "/regenerate", ro.Token, nil},
		{"add ssh key", "POST", "/v1/user/ssh-keys", ro.Token, map[string]any{"public_key": "ssh-ed25519 AAAA", "name": "k"}},
		{"generate ssh key", "POST", "/v1/user/ssh-keys/generate", ro.Token, nil},
		{"delete ssh key", "DELETE", "/v1/user/ssh-keys/some-key", ro.Token, nil},
		{"change password", "POST", "/v1/user/change-password", ro.Token, map[string]any{"old_password": "password-alice", "new_password": "new-password-1"}},
		{"rebuild host", "POST", "/v1/user/hosts/some-host/rebuild", ro.Token, nil},
		{"compat create", "POST", "/_/token", ro.Token, map[string]any{"name": "c"}},
		{"compat update", "PUT", "/_/token", ro.Token, map[string]any{"name": "rw", "active": false}},
		{"compat delete", "DELETE", "/_/token", ro.Token, map[string]any{"name": "rw"}},
		{"admin create user", "POST", "/v1/admin/users", aro.Token, map[string]any{"username": "mallory", "password": "password-mallory"}},
		{"admin disable user", "PATCH", "/v1/admin/users/" + uid, aro.Token, map[string]any{"status": "disabled"}},
		{"admin revoke token", "DELETE", "/v1/admin/tokens/" + rw.ID, aro.Token, nil},
		{"admin create token", "POST", "/v1/tokens", aro.Token, map[string]any{"name": "w", "write": true}},
	}
	for _, c := range writes {
		t.Run(c.name, func(t *testing.T) {
			tokWantScope(t, tokAs(e, t).raw(c.method, c.path, c.bearer, c.body), c.method+" "+c.path)
		})
	}
	// Nothing changed.
	tokWorks(e, rw.Token, "sibling after the refused mutations")
	ts := tokList(e, jwt)
	if len(ts) != 2 {
		t.Fatalf("tokens changed: %+v", ts)
	}
	for _, v := range ts {
		if !v.Active || (v.ID == ro.ID && (v.Name != "ro" || v.Write)) || (v.ID == rw.ID && (v.Name != "rw" || !v.Write)) {
			t.Errorf("token changed: %+v", v)
		}
	}
	var u app.UserView
	e.do("GET", "/v1/admin/users/"+uid, e.admin, nil, 200, &u)
	if u.Status != app.UserActive {
		t.Errorf("user status %s", u.Status)
	}
	tokWorks(e, e.login("alice", "password-alice"), "old password still valid")
}

// A viewer's token is read-only whatever its write flag; role changes apply at once.
func TestTokenRoleIntersection(t *testing.T) {
	e := newEnv(t)
	_, vjwt := e.user("viewer", app.RoleViewer)
	// Without a write field a viewer's token says what it can do: read only.
	if d := tokCreate(e, vjwt, map[string]any{"name": "viewer-default"}); d.Write {
		t.Errorf("a viewer's token made without a write field shows write=true")
	}
	// Asked for explicitly, the flag is kept and intersected with the role on every use.
	vt := tokCreate(e, vjwt, map[string]any{"name": "viewer-token", "write": true})
	if !vt.Write {
		t.Fatalf("viewer token asked with write=true stored with write=false; the flag must be kept as asked")
	}
	uid, ujwt := e.user("alice", app.RoleUser)
	ut := tokCreate(e, ujwt, map[string]any{"name": "user-token"})
	at := tokCreate(e, e.admin, map[string]any{"name": "admin-token"})
	cases := []struct {
		name, method, path, bearer string
		body                       any
		status                     int
		code                       string
	}{
		{"viewer token reads admin data", "GET", "/v1/admin/users", vt.Token, nil, 200, ""},
		{"viewer token reads events", "GET", "/v1/admin/events", vt.Token, nil, 200, ""},
		{"viewer token creates a token", "POST", "/v1/tokens", vt.Token, map[string]any{"name": "x"}, 403, "insufficient_scope"},
		{"viewer token patches itself", "PATCH", "/v1/tokens/" + vt.ID, vt.Token, map[string]any{"name": "y"}, 403, "insufficient_scope"},
		{"viewer token regenerates itself", "POST", "/v1/tokens/" + vt.ID + "/regenerate", vt.Token, nil, 403, "insufficient_scope"},
		{"viewer token generates a key", "POST", "/v1/user/ssh-keys/generate", vt.Token, nil, 403, "insufficient_scope"},
		{"viewer token admin write", "POST", "/v1/admin/users", vt.Token, map[string]any{"username": "zed", "password": "password-zed"}, 403, ""},
		{"user token admin read", "GET", "/v1/admin/users", ut.Token, nil, 403, "forbidden"},
		{"user token admin write", "POST", "/v1/admin/users", ut.Token, map[string]any{"username": "zed", "password": "password-zed"}, 403, "forbidden"},
		{"user token own write", "POST", "/v1/user/ssh-keys/generate", ut.Token, nil, 201, ""},
		{"admin token admin write", "POST", "/v1/admin/users", at.Token, map[string]any{"username": "zed", "password": "password-zed"}, 201, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tokAs(e, t).raw(c.method, c.path, c.bearer, c.body)
			if c.code == "insufficient_scope" {
				tokWantScope(t, r, c.name)
				return
			}
			tokWantStatus(t, r, c.status, c.code, c.name)
		})
	}
	// Demoting alice to viewer makes her write token read-only on the next request.
	e.do("PATCH", "/v1/admin/users/"+uid, e.admin, map[string]any{"role": "viewer"}, 200, nil)
	tokWantScope(t, e.raw("POST", "/v1/tokens", ut.Token, map[string]any{"name": "after-demotion"}), "demoted user's token")
	e.do("PATCH", "/v1/admin/users/"+uid, e.admin, map[string]any{"role": "user"}, 200, nil)
	tokCreate(e, ut.Token, map[string]any{"name": "after-promotion", "expires_in_days": 7})
}

// A token never creates (or regenerates) a credential with more rights than itself.
func TestTokenNoEscalation(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	p7 := tokCreate(e, jwt, map[string]any{"name": "p7", "expires_in_days": 7})
	never := tokCreate(e, jwt, map[string]any{"name": "never", "expires_at": "never"})
	long := tokCreate(e, jwt, map[string]any{"name": "long", "expires_in_days": 90})
	short := tokCreate(e, jwt, map[string]any{"name": "short", "expires_in_days": 7})
	ro := tokCreate(e, jwt, map[string]any{"name": "ro", "write": false})
	cases := []struct {
		name, method, path, bearer string
		body                       map[string]any
		status                     int
	}{
		{"read-only creates write", "POST", "/v1/tokens", ro.Token, map[string]any{"name": "a", "write": true}, 403},
		{"read-only creates read-only", "POST", "/v1/tokens", ro.Token, map[string]any{"name": "b", "write": false}, 403},
		{"7-day creates 30-day", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "c", "expires_in_days": 30}, 403},
		{"7-day creates never", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "d", "expires_at": "never"}, 403},
		{"7-day creates null", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "e", "expires_at": nil}, 403},
		{"7-day creates default (30 days)", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "f"}, 403},
		{"7-day creates a day later", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "g", "expires_at": "2026-12-01"}, 403},
		{"7-day creates same day", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "h", "expires_in_days": 7}, 201},
		{"7-day creates earlier", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "i", "expires_at": "2026-11-29"}, 201},
		{"7-day creates read-only", "POST", "/v1/tokens", p7.Token, map[string]any{"name": "j", "expires_in_days": 7, "write": false}, 201},
		{"never creates never", "POST", "/v1/tokens", never.Token, map[string]any{"name": "k", "expires_at": "never"}, 201},
		{"7-day extends itself", "PATCH", "/v1/tokens/" + p7.ID, p7.Token, map[string]any{"expires_in_days": 90}, 403},
		{"7-day makes itself eternal", "PATCH", "/v1/tokens/" + p7.ID, p7.Token, map[string]any{"expires_at": "never"}, 403},
		{"7-day extends a sibling", "PATCH", "/v1/tokens/" + short.ID, p7.Token, map[string]any{"expires_in_days": 30}, 403},
		{"7-day shortens a sibling", "PATCH", "/v1/tokens/" + long.ID, p7.Token, map[string]any{"expires_in_days": 7}, 200},
		{"7-day regenerates a never token", "POST", "/v1/tokens/" + never.ID + "/regenerate", p7.Token, nil, 403},
		{"7-day regenerates a sibling of the same life", "POST", "/v1/tokens/" + short.ID + "/regenerate", p7.Token, nil, 200},
		{"7-day regenerates itself", "POST", "/v1/tokens/" + p7.ID + "/regenerate", p7.Token, nil, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := tokAs(e, t)
			var body any
			if c.body != nil {
				body = c.body
			}
			r := e.raw(c.method, c.path, c.bearer, body)
			if c.status == 403 {
				tokWantScope(t, r, c.name)
				return
			}
			tokWantStatus(t, r, c.status, "", c.name)
			if c.method == "POST" && c.path == "/v1/tokens" {
				var out app.CreatedToken
				r.json(t, &out)
				if e.raw("GET", "/v1/auth/me", out.Token, nil).Status != 200 {
					t.Errorf("created token does not work")
				}
			}
			if strings.HasSuffix(c.path, "/regenerate") && c.path == "/v1/tokens/"+p7.ID+"/regenerate" {
				var out app.CreatedToken
				r.json(t, &out)
				p7.Token = out.Token
			}
		})
	}
	tokWorks(e, never.Token, "never token not regenerated by the refused request")
}

// The user's state is checked on every request: disabled, expired, deleted users' tokens are
// 401 on the very next request. An expired account's tokens work again when the account
// does; disabling, deleting or changing the password revokes them for good.
func TestTokenUserState(t *testing.T) {
	cases := []struct {
		name    string
		act     func(e *env, uid string)
		restore func(e *env, uid string) // nil: no way back
		revokes bool                     // the tokens are gone: restoring does not bring them back
	}{
		{"disabled", func(e *env, uid string) {
			e.do("PATCH", "/v1/admin/users/"+uid, e.admin, map[string]any{"status": "disabled"}, 200, nil)
		}, func(e *env, uid string) {
			e.do("PATCH", "/v1/admin/users/"+uid, e.admin, map[string]any{"status": "active"}, 200, nil)
		}, true},
		{"password rotated", func(e *env, uid string) {
			e.do("POST", "/v1/admin/users/"+uid+"/rotate-password", e.admin, nil, 200, nil)
		}, func(e *env, uid string) {}, true},
		{"expired by the clock", func(e *env, uid string) {
			e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": tokStart.Add(time.Hour)}, 200, nil)
			tokWorks(e, e.login("alice", "password-alice"), "user before expiry")
			e.clock.Add(time.Hour)
		}, func(e *env, uid string) {
			e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": nil}, 200, nil)
		}, false},
		{"expiry set in the past", func(e *env, uid string) {
			e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": tokStart.Add(-time.Hour)}, 200, nil)
		}, func(e *env, uid string) {
			e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": tokStart.AddDate(1, 0, 0)}, 200, nil)
		}, false},
		{"deleted", func(e *env, uid string) {
			e.do("DELETE", "/v1/admin/users/"+uid, e.admin, nil, 204, nil)
		}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			uid, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
			ro := tokCreate(e, jwt, map[string]any{"name": "ro", "write": false})
			tokWorks(e, tok.Token, "before")
			tc.act(e, uid)
			for _, v := range []string{tok.Token, ro.Token} {
				tokRejected(e, v, "right after "+tc.name)
				tokWant401(t, e.raw("POST", "/v1/tokens", v, map[string]any{"name": "x", "write": false}), "mutation after "+tc.name)
			}
			if tc.restore == nil || tc.revokes {
				if tc.restore != nil {
					tc.restore(e, uid)
					tokRejected(e, tok.Token, "after restoring the account ("+tc.name+" revoked it)")
				}
				var all struct{ Tokens []app.TokenView }
				e.do("GET", "/v1/admin/tokens?user_id="+url.QueryEscape(uid), e.admin, nil, 200, &all)
				if len(all.Tokens) != 0 {
					t.Errorf("%s: tokens still stored: %+v", tc.name, all.Tokens)
				}
				return
			}
			tc.restore(e, uid)
			tokWorks(e, tok.Token, "right after restoring the account")
			tokWorks(e, ro.Token, "read-only token after restoring the account")
		})
	}
}

// Every rejected credential gets the same status, header and body.
func TestTokenUnauthorizedIsGeneric(t *testing.T) {
	type setup func(e *env) (header string)
	bearer := func(v string) string { return "Bearer " + v }
	cases := []struct {
		name string
		make setup
	}{
		{"missing header", func(e *env) string { return "" }},
		{"not bearer", func(e *env) string { return "Basic YWxpY2U6cHc=" }},
		{"empty bearer", func(e *env) string { return "Bearer " }},
		{"malformed token", func(e *env) string { return bearer("ccp_nope") }},
		{"bad checksum", func(e *env) string {
			v := app.NewTokenValue()
			last := v[len(v)-1]
			swap := byte('A')
			if last == 'A' {
				swap = 'B'
			}
			return bearer(v[:len(v)-1] + string(swap))
		}},
		{"unknown well-formed token", func(e *env) string { return bearer(app.NewTokenValue()) }},
		{"garbage jwt", func(e *env) string { return bearer("a.b.c") }},
		{"expired token", func(e *env) string {
			tok := tokCreate(e, e.admin, map[string]any{"name": "x", "expires_in_days": 7})
			e.clock.Set(tokDate("2026-11-30"))
			return bearer(tok.Token)
		}},
		{"inactive token", func(e *env) string {
			tok := tokCreate(e, e.admin, map[string]any{"name": "x"})
			e.do("PATCH", "/v1/tokens/"+tok.ID, e.admin, map[string]any{"active": false}, 200, nil)
			return bearer(tok.Token)
		}},
		{"revoked token", func(e *env) string {
			tok := tokCreate(e, e.admin, map[string]any{"name": "x"})
			e.do("DELETE", "/v1/tokens/"+tok.ID, e.admin, nil, 204, nil)
			return bearer(tok.Token)
		}},
		{"regenerated token's old value", func(e *env) string {
			tok := tokCreate(e, e.admin, map[string]any{"name": "x"})
			e.do("POST", "/v1/tokens/"+tok.ID+"/regenerate", e.admin, nil, 200, nil)
			return bearer(tok.Token)
		}},
		{"disabled user's token", func(e *env) string {
			uid, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "x"})
			e.do("PATCH", "/v1/admin/users/"+uid, e.admin, map[string]any{"status": "disabled"}, 200, nil)
			return bearer(tok.Token)
		}},
		{"expired user's token", func(e *env) string {
			uid, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "x"})
			e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": tokStart.Add(time.Minute)}, 200, nil)
			e.clock.Add(time.Minute)
			return bearer(tok.Token)
		}},
		{"deleted user's token", func(e *env) string {
			uid, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "x"})
			e.do("DELETE", "/v1/admin/users/"+uid, e.admin, nil, 204, nil)
			return bearer(tok.Token)
		}},
	}
	var firstBody []byte
	var firstHeader string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := tc.make(e)
			for _, m := range []struct{ method, path string }{{"GET", "/v1/auth/me"}, {"GET", "/v1/tokens"}, {"POST", "/v1/tokens"}} {
				req, err := http.NewRequest(m.method, e.srv.URL+m.path, strings.NewReader(`{"name":"z"}`))
				if err != nil {
					t.Fatal(err)
				}
				if h != "" {
					req.Header.Set("Authorization", h)
				}
				res, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				r := resp{Status: res.StatusCode, Header: res.Header, Body: b}
				tokWant401(t, r, m.method+" "+m.path)
				if firstBody == nil {
					firstBody, firstHeader = b, r.Header.Get("WWW-Authenticate")
				}
				if !bytes.Equal(b, firstBody) || r.Header.Get("WWW-Authenticate") != firstHeader {
					t.Errorf("answer differs from the first case: %s / %q vs %s / %q", b, r.Header.Get("WWW-Authenticate"), firstBody, firstHeader)
				}
			}
		})
	}
}

// last_used_at/last_used_ip are written on first use, then at most once a minute.
func TestTokenLastUsed(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
	if tok.LastUsedAt != nil || tok.LastUsedIP != "" {
		t.Fatalf("new token already used: %+v", tok.TokenView)
	}
	if v := tokGet(e, jwt, tok.ID); v.LastUsedAt != nil {
		t.Fatalf("reading with the session touched the token")
	}
	steps := []struct {
		name    string
		advance time.Duration
		want    time.Time
	}{
		{"first use", 0, tokStart},
		{"again at once", 0, tokStart},
		{"30s later: unchanged", 30 * time.Second, tokStart},
		{"59s later: unchanged", 29 * time.Second, tokStart},
		{"61s later: changed", 2 * time.Second, tokStart.Add(61 * time.Second)},
		{"31s after that: unchanged", 31 * time.Second, tokStart.Add(61 * time.Second)},
		{"an hour later: changed", time.Hour, tokStart.Add(time.Hour + 92*time.Second)},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e := tokAs(e, t)
			e.clock.Add(st.advance)
			tokWorks(e, tok.Token, st.name)
			jwt := e.login("alice", "password-alice")
			v := tokGet(e, jwt, tok.ID)
			if v.LastUsedAt == nil || !v.LastUsedAt.Equal(st.want) {
				t.Errorf("last_used_at = %s, want %s", tokFmt(v.LastUsedAt), st.want.Format(time.RFC3339))
			}
			if v.LastUsedIP != "127.0.0.1" {
				t.Errorf("last_used_ip = %q", v.LastUsedIP)
			}
			var all struct{ Tokens []app.TokenView }
			e.do("GET", "/v1/admin/tokens", tokAdmin(e), nil, 200, &all)
			for _, a := range all.Tokens {
				if a.ID == tok.ID && !tokSameTime(a.LastUsedAt, v.LastUsedAt) {
					t.Errorf("admin list shows last_used_at %s", tokFmt(a.LastUsedAt))
				}
			}
		})
	}
}

// A token is accepted wherever a JWT is: every parameterless GET route answers the admin's
// write token as it answers the admin's JWT.
func TestTokenBearerEverywhere(t *testing.T) {
	e := newEnv(t)
	tok := tokCreate(e, e.admin, map[string]any{"name": "automation"})
	n := 0
	for _, rt := range e.api.Routes() {
		if rt.Method != "GET" || rt.Access == "public" || strings.ContainsAny(rt.Path, ":*") {
			continue
		}
		n++
		t.Run(rt.Path, func(t *testing.T) {
			e := tokAs(e, t)
			path := rt.Path
			if strings.HasSuffix(path, "/events/stream") {
				path += "?once=1" // the change feed: close after the replay
			}
			a := e.raw("GET", path, e.admin, nil)
			b := e.raw("GET", path, tok.Token, nil)
			if a.Status != b.Status || b.Status == 401 || b.Status == 403 {
				t.Errorf("JWT %d, token %d (%s)", a.Status, b.Status, b.Body)
			}
		})
	}
	if n < 8 {
		t.Fatalf("only %d routes walked", n)
	}
	// Lower-case scheme is accepted too.
	r := e.raw("GET", "/v1/auth/me", "", nil)
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/auth/me", nil)
	req.Header.Set("Authorization", "bearer "+tok.Token)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || r.Status != 401 {
		t.Errorf("lower-case bearer %d, no header %d", res.StatusCode, r.Status)
	}
}

// Names are unique per user (409), the same name is fine for another user, and a revoked
// token's name is free again.
func TestTokenNamesUnique(t *testing.T) {
	e := newEnv(t)
	_, alice := e.user("alice", app.RoleUser)
	_, bob := e.user("bobby", app.RoleUser)
	steps := []struct {
		name   string
		bearer string
		body   map[string]any
		status int
		code   string
	}{
		{"first", alice, map[string]any{"name": "ci"}, 201, ""},
		{"same name same user", alice, map[string]any{"name": "ci"}, 409, "duplicate_token_name"},
		{"same name after trimming", alice, map[string]any{"name": "  ci "}, 409, "duplicate_token_name"},
		{"same name other settings", alice, map[string]any{"name": "ci", "write": false, "expires_at": "never"}, 409, "duplicate_token_name"},
		{"same name other user", bob, map[string]any{"name": "ci"}, 201, ""},
		{"names are case-sensitive", alice, map[string]any{"name": "CI"}, 201, ""},
		{"unicode name", alice, map[string]any{"name": "déploiement 🚀"}, 201, ""},
		{"64 characters", alice, map[string]any{"name": strings.Repeat("n", 64)}, 201, ""},
		{"65 characters", alice, map[string]any{"name": strings.Repeat("n", 65)}, 422, "invalid_name"},
		{"missing name", alice, map[string]any{}, 422, "invalid_name"},
		{"blank name", alice, map[string]any{"name": "   "}, 422, "invalid_name"},
		{"control character", alice, map[string]any{"name": "a\tb"}, 422, "invalid_name"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			tokWantStatus(t, tokAs(e, t).raw("POST", "/v1/tokens", st.bearer, st.body), st.status, st.code, "create")
		})
	}
	if n := len(tokList(e, alice)); n != 4 {
		t.Errorf("alice has %d tokens, want 4", n)
	}
	if n := len(tokList(e, bob)); n != 1 {
		t.Errorf("bob has %d tokens, want 1", n)
	}
	// Compat creation obeys the same rule.
	tokWantStatus(t, e.raw("POST", "/_/token", alice, map[string]any{"name": "ci"}), 409, "duplicate_token_name", "compat duplicate")
}

// Admins list every token and filter by user; they revoke anyone's token.
func TestTokenAdminRoutes(t *testing.T) {
	e := newEnv(t)
	aid, alice := e.user("alice", app.RoleUser)
	bid, bob := e.user("bobby", app.RoleUser)
	_, viewer := e.user("viewer", app.RoleViewer)
	a1 := tokCreate(e, alice, map[string]any{"name": "a1"})
	a2 := tokCreate(e, alice, map[string]any{"name": "a2", "write": false})
	b1 := tokCreate(e, bob, map[string]any{"name": "b1"})
	adm := tokCreate(e, e.admin, map[string]any{"name": "adm"})
	ids := func(ts []app.TokenView) []string {
		var out []string
		for _, v := range ts {
			out = append(out, v.ID)
		}
		sort.Strings(out)
		return out
	}
	sorted := func(s ...string) []string { sort.Strings(s); return s }
	lists := []struct {
		name, bearer, query string
		status              int
		want                []string
	}{
		{"all", e.admin, "", 200, sorted(a1.ID, a2.ID, b1.ID, adm.ID)},
		{"alice", e.admin, "?user_id=" + aid, 200, sorted(a1.ID, a2.ID)},
		{"bob", e.admin, "?user_id=" + bid, 200, sorted(b1.ID)},
		{"unknown user", e.admin, "?user_id=nobody", 200, nil},
		{"with an admin token", adm.Token, "?user_id=" + bid, 200, sorted(b1.ID)},
		{"viewer may read", viewer, "", 200, sorted(a1.ID, a2.ID, b1.ID, adm.ID)},
		{"user may not", alice, "", 403, nil},
		{"user token may not", a1.Token, "", 403, nil},
	}
	for _, c := range lists {
		t.Run("list/"+c.name, func(t *testing.T) {
			e := tokAs(e, t)
			r := e.raw("GET", "/v1/admin/tokens"+c.query, c.bearer, nil)
			tokWantStatus(t, r, c.status, "", "admin list")
			if c.status != 200 {
				return
			}
			var out struct{ Tokens []app.TokenView }
			r.json(t, &out)
			if got := ids(out.Tokens); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("ids %v, want %v", got, c.want)
			}
			if bytes.Contains(r.Body, []byte(`"token"`)) {
				t.Errorf("admin list carries a token value field: %s", r.Body)
			}
		})
	}
	revokes := []struct {
		name, bearer, id string
		status           int
	}{
		{"user may not", bob, a1.ID, 403},
		{"user token may not", b1.Token, a1.ID, 403},
		{"viewer may not", viewer, a1.ID, 403},
		{"admin revokes alice's token", e.admin, a1.ID, 204},
		{"twice", e.admin, a1.ID, 404},
		{"unknown", e.admin, "nope", 404},
		{"admin token revokes bob's token", adm.Token, b1.ID, 204},
	}
	for _, c := range revokes {
		t.Run("revoke/"+c.name, func(t *testing.T) {
			tokWantStatus(t, tokAs(e, t).raw("DELETE", "/v1/admin/tokens/"+c.id, c.bearer, nil), c.status, "", "admin revoke")
		})
	}
	tokRejected(e, a1.Token, "alice's token revoked by an admin")
	tokRejected(e, b1.Token, "bob's token revoked by an admin token")
	tokWorks(e, a2.Token, "alice's other token")
	evs, _ := tokEvents(e)
	if ev, ok := tokFindEvent(evs, func(ev app.Event) bool { return ev.Action == "token.revoke" && ev.TargetID == b1.ID }); !ok {
		t.Errorf("no revoke event for b1")
	} else if ev.UserID != bid || ev.ActorID != e.adminID || ev.TokenID != adm.ID || ev.TokenName != "adm" || ev.Message != "b1" {
		t.Errorf("revoke event %+v", ev)
	}
}

// The name-addressed compatibility routes at /_/token.
func TestTokenCompat(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	_, bob := e.user("bobby", app.RoleUser)
	ms := func(s string) int64 { return tokDate(s).UnixMilli() }
	type compat struct {
		ID             string     `json:"id"`
		Name           string     `json:"name"`
		ExpirationDate *int64     `json:"expiration_date"`
		Active         bool       `json:"active"`
		Write          bool       `json:"write"`
		Hint           string     `json:"hint"`
		LastUsedAt     *time.Time `json:"last_used_at"`
		Token          string     `json:"token"`
	}

	// Create with an expiration date in ms: it round-trips exactly.
	var c compat
	r := e.do("POST", "/_/token", jwt, map[string]any{"name": "legacy", "expiration_date": ms("2027-01-15")}, 201, &c)
	tokNoStore(t, r)
	if !app.WellFormedToken(c.Token) || c.ExpirationDate == nil || *c.ExpirationDate != ms("2027-01-15") || !c.Active || !c.Write {
		t.Fatalf("compat create: %s", r.Body)
	}
	if v := tokGet(e, jwt, c.ID); v.ExpiresAt == nil || !v.ExpiresAt.Equal(tokDate("2027-01-15")) || v.Name != "legacy" {
		t.Errorf("native view %+v", v)
	}
	tokWorks(e, c.Token, "compat-created token")

	// A mid-day millisecond value means that UTC date: the token stops at its 00:00.
	var mid compat
	e.do("POST", "/_/token", jwt, map[string]any{"name": "midday", "expiration_date": tokDate("2027-02-10").Add(15*time.Hour + 30*time.Minute).UnixMilli()}, 201, &mid)
	if mid.ExpirationDate == nil || *mid.ExpirationDate != ms("2027-02-10") {
		t.Errorf("mid-day expiration_date came back as %v", mid.ExpirationDate)
	}

	// Created inactive on request.
	var off compat
	e.do("POST", "/_/token", jwt, map[string]any{"name": "off", "active": false, "write": false}, 201, &off)
	if off.Active || off.Write || !app.WellFormedToken(off.Token) {
		t.Errorf("inactive create: %+v", off)
	}
	tokRejected(e, off.Token, "token created inactive")

	steps := []struct {
		name, method, path, bearer string
		body                       any
		status                     int
		code                       string
		check                      func(t *testing.T, r resp)
	}{
		{"list", "GET", "/_/token", jwt, nil, 200, "", func(t *testing.T, r resp) {
			var l []compat
			r.json(t, &l)
			found := false
			for _, it := range l {
				if it.Name == "legacy" {
					found = it.ID == c.ID && it.Token == "" && it.ExpirationDate != nil && *it.ExpirationDate == ms("2027-01-15")
				}
			}
			if len(l) != 3 || !found {
				t.Errorf("list %s", r.Body)
			}
			var raw []map[string]any
			r.json(t, &raw)
			for _, m := range raw {
				if _, ok := m["token"]; ok {
					t.Errorf("list item carries token: %v", m)
				}
			}
		}},
		{"update expiry", "PUT", "/_/token", jwt, map[string]any{"name": "legacy", "expiration_date": ms("2027-03-01")}, 200, "", func(t *testing.T, r resp) {
			var v compat
			r.json(t, &v)
			if v.ExpirationDate == nil || *v.ExpirationDate != ms("2027-03-01") || v.Token != "" {
				t.Errorf("update %s", r.Body)
			}
		}},
		{"deactivate", "PUT", "/_/token", jwt, map[string]any{"name": "legacy", "active": false}, 200, "", func(t *testing.T, r resp) {
			tokRejected(tokAs(e, t), c.Token, "compat-deactivated token")
		}},
		{"reactivate", "PUT", "/_/token", jwt, map[string]any{"name": "legacy", "active": true}, 200, "", func(t *testing.T, r resp) {
			tokWorks(tokAs(e, t), c.Token, "compat-reactivated token")
		}},
		{"lower write", "PUT", "/_/token", jwt, map[string]any{"name": "legacy", "write": false}, 200, "", nil},
		{"raise write", "PUT", "/_/token", jwt, map[string]any{"name": "legacy", "write": true}, 422, "invalid_write", nil},
		{"past expiry", "PUT", "/_/token", jwt, map[string]any{"name": "legacy", "expiration_date": ms("2026-01-01")}, 422, "invalid_expiration_date", nil},
		{"update without name", "PUT", "/_/token", jwt, map[string]any{"active": true}, 422, "invalid_name", nil},
		{"update unknown name", "PUT", "/_/token", jwt, map[string]any{"name": "nope", "active": true}, 404, "not_found", nil},
		{"update another user's token", "PUT", "/_/token", bob, map[string]any{"name": "legacy", "active": false}, 404, "not_found", nil},
		{"create past expiry", "POST", "/_/token", jwt, map[string]any{"name": "old", "expiration_date": ms("2026-11-01")}, 422, "invalid_expiration_date", nil},
		{"create duplicate", "POST", "/_/token", jwt, map[string]any{"name": "legacy"}, 409, "duplicate_token_name", nil},
		{"value is gone", "GET", "/_/token/value?name=legacy", jwt, nil, 410, "token_value_unavailable", func(t *testing.T, r resp) {
			var b struct{ Error struct{ Message string } }
			r.json(t, &b)
			if !strings.Contains(b.Error.Message, "POST /v1/tokens/"+c.ID+"/regenerate") {
				t.Errorf("410 message does not point to regenerate: %q", b.Error.Message)
			}
			if strings.Contains(string(r.Body), c.Token) {
				t.Errorf("410 body carries the value")
			}
		}},
		{"value of unknown name", "GET", "/_/token/value?name=nope", jwt, nil, 404, "not_found", nil},
		{"value of another user's token", "GET", "/_/token/value?name=legacy", bob, nil, 404, "not_found", nil},
		{"delete by another user", "DELETE", "/_/token", bob, map[string]any{"name": "legacy"}, 404, "not_found", nil},
		{"delete", "DELETE", "/_/token", jwt, map[string]any{"name": "legacy"}, 204, "", func(t *testing.T, r resp) {
			tokRejected(tokAs(e, t), c.Token, "compat-deleted token")
		}},
		{"delete twice", "DELETE", "/_/token", jwt, map[string]any{"name": "legacy"}, 404, "not_found", nil},
		{"delete without name", "DELETE", "/_/token", jwt, map[string]any{}, 422, "invalid_name", nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := tokAs(e, t).raw(st.method, st.path, st.bearer, st.body)
			tokWantStatus(t, r, st.status, st.code, st.method+" "+st.path)
			if st.check != nil {
				st.check(t, r)
			}
		})
	}
}

// The lifecycle is audited with the token's id and name, every mutation made with a token
// carries token_id and token_name, and rejected tokens are recorded as auth failures.
func TestTokenAuditEvents(t *testing.T) {
	e := newEnv(t)
	uid, jwt := e.user("alice", app.RoleUser)
	tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
	ro := tokCreate(e, jwt, map[string]any{"name": "ro", "write": false})
	adm := tokCreate(e, e.admin, map[string]any{"name": "adm-auto"})
	e.do("PATCH", "/v1/tokens/"+tok.ID, jwt, map[string]any{"name": "ci-2"}, 200, nil)
	var regen app.CreatedToken
	e.do("POST", "/v1/tokens/"+tok.ID+"/regenerate", jwt, nil, 200, &regen)
	var child app.CreatedToken
	e.do("POST", "/v1/tokens", regen.Token, map[string]any{"name": "child", "expires_in_days": 7}, 201, &child)
	e.do("PATCH", "/v1/tokens/"+child.ID, regen.Token, map[string]any{"active": false}, 200, nil)
	var key struct{ Key struct{ ID string } }
	e.do("POST", "/v1/user/ssh-keys/generate", regen.Token, nil, 201, &key)
	e.do("DELETE", "/v1/user/ssh-keys/"+key.Key.ID, regen.Token, nil, 204, nil)
	var nu app.UserView
	e.do("POST", "/v1/admin/users", adm.Token, map[string]any{"username": "carol", "password": "password-carol"}, 201, &nu)
	e.do("DELETE", "/v1/tokens/"+child.ID, regen.Token, nil, 204, nil)
	e.raw("POST", "/v1/user/ssh-keys/generate", ro.Token, nil) // denied
	e.raw("GET", "/v1/auth/me", tok.Token, nil)                // old value: auth failure
	e.do("DELETE", "/v1/tokens/"+ro.ID, jwt, nil, 204, nil)

	evs, _ := tokEvents(e)
	cases := []struct {
		name  string
		match func(app.Event) bool
		check func(app.Event) string
	}{
		{"create", func(ev app.Event) bool { return ev.Action == "token.create" && ev.TargetID == tok.ID }, func(ev app.Event) string {
			if ev.TargetType != "token" || ev.Message != "ci" || ev.UserID != uid || ev.ActorID != uid || ev.AuthMethod != "jwt" || ev.Result != "success" {
				return "fields"
			}
			return ""
		}},
		{"update", func(ev app.Event) bool { return ev.Action == "token.update" && ev.TargetID == tok.ID }, func(ev app.Event) string {
			if ev.Message != "ci-2" || ev.UserID != uid {
				return "fields"
			}
			return ""
		}},
		{"regenerate", func(ev app.Event) bool { return ev.Action == "token.regenerate" && ev.TargetID == tok.ID }, func(ev app.Event) string {
			if ev.Message != "ci-2" || ev.TargetType != "token" {
				return "fields"
			}
			return ""
		}},
		{"revoke", func(ev app.Event) bool { return ev.Action == "token.revoke" && ev.TargetID == ro.ID }, func(ev app.Event) string {
			if ev.Message != "ro" || ev.UserID != uid {
				return "fields"
			}
			return ""
		}},
		{"create made with a token", func(ev app.Event) bool { return ev.Action == "token.create" && ev.TargetID == child.ID }, nil},
		{"update made with a token", func(ev app.Event) bool { return ev.Action == "token.update" && ev.TargetID == child.ID }, nil},
		{"revoke made with a token", func(ev app.Event) bool { return ev.Action == "token.revoke" && ev.TargetID == child.ID }, nil},
		{"ssh key add made with a token", func(ev app.Event) bool { return ev.Action == "ssh_key.add" && ev.TargetID == key.Key.ID }, nil},
		{"ssh key delete made with a token", func(ev app.Event) bool {
			return ev.Action == "ssh_key.delete" && ev.TargetID == key.Key.ID
		}, nil},
		{"admin mutation made with a token", func(ev app.Event) bool { return ev.Action == "user.create" && ev.TargetID == nu.ID }, func(ev app.Event) string {
			if ev.TokenID != adm.ID || ev.TokenName != "adm-auto" || ev.ActorID != e.adminID || ev.AuthMethod != "token" {
				return "token fields"
			}
			return ""
		}},
		{"denied mutation with a read-only token", func(ev app.Event) bool { return ev.Action == "ssh_key.add" && ev.Result == "denied" }, func(ev app.Event) string {
			if ev.TokenID != ro.ID || ev.TokenName != "ro" || ev.AuthMethod != "token" {
				return "token fields"
			}
			return ""
		}},
		{"auth failure", func(ev app.Event) bool { return ev.Action == "auth.failure" && ev.AuthMethod == "token" }, func(ev app.Event) string {
			if ev.Result != "failure" || ev.SourceIP != "127.0.0.1" || ev.ActorID != "" {
				return "fields"
			}
			return ""
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, ok := tokFindEvent(evs, c.match)
			if !ok {
				t.Fatalf("no such event among %d", len(evs))
			}
			if c.check == nil {
				if ev.TokenID != tok.ID || ev.TokenName != "ci-2" || ev.AuthMethod != "token" || ev.ActorID != uid || ev.Result != "success" {
					t.Errorf("event made with a token lacks its id/name: %+v", ev)
				}
				return
			}
			if what := c.check(ev); what != "" {
				t.Errorf("%s: %+v", what, ev)
			}
		})
	}
}

// The value is shown once: never in a list or get response, the audit log, the server log or
// the database file.
func TestTokenValueNeverLeaks(t *testing.T) {
	logs := &testenv.Buffer{}
	e := newEnv(t, withLogOutput(logs))
	uid, jwt := e.user("alice", app.RoleUser)
	var values []string
	tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
	ro := tokCreate(e, jwt, map[string]any{"name": "ro", "write": false, "expires_at": "never"})
	adm := tokCreate(e, e.admin, map[string]any{"name": "adm"})
	var c struct{ ID, Token string }
	e.do("POST", "/_/token", jwt, map[string]any{"name": "compat"}, 201, &c)
	var regen app.CreatedToken
	e.do("POST", "/v1/tokens/"+tok.ID+"/regenerate", jwt, nil, 200, &regen)
	revoked := tokCreate(e, jwt, map[string]any{"name": "revoked"})
	e.do("DELETE", "/v1/tokens/"+revoked.ID, jwt, nil, 204, nil)
	values = append(values, tok.Token, ro.Token, adm.Token, c.Token, regen.Token, revoked.Token)

	// Use them: successes, denials, failures.
	e.do("GET", "/v1/tokens", regen.Token, nil, 200, nil)
	e.do("POST", "/v1/user/ssh-keys/generate", regen.Token, nil, 201, nil)
	e.do("PATCH", "/v1/tokens/"+ro.ID, regen.Token, map[string]any{"name": "ro-2"}, 200, nil)
	e.raw("POST", "/v1/tokens", ro.Token, map[string]any{"name": "x"})
	e.raw("GET", "/v1/auth/me", tok.Token, nil)
	e.raw("GET", "/v1/auth/me", revoked.Token, nil)
	e.raw("GET", "/v1/tokens/"+ro.Token, jwt, nil) // a value in a path
	e.raw("GET", "/v1/no-such-route", regen.Token, nil)
	e.raw("POST", "/v1/tokens", regen.Token, `{"name": "`+regen.Token+`", "expires_in_days": 14}`)
	var carol struct{ ID string }
	e.do("POST", "/v1/admin/users", adm.Token, map[string]any{"username": "carol", "password": "password-carol"}, 201, &carol)
	// (Disabling alice would revoke her tokens for good: disable another account.)
	e.do("PATCH", "/v1/admin/users/"+carol.ID, adm.Token, map[string]any{"status": "disabled"}, 200, nil)
	e.raw("GET", "/v1/auth/me", regen.Token, nil)
	e.do("PATCH", "/v1/admin/users/"+carol.ID, adm.Token, map[string]any{"status": "active"}, 200, nil)
	_ = uid
	jwt = e.login("alice", "password-alice")

	viewKeys := []string{"active", "created_at", "expired", "expires_at", "hint", "id", "last_used_at", "last_used_ip", "name", "updated_at", "user_id", "write"}
	compatKeys := []string{"active", "created_at", "expiration_date", "hint", "id", "last_used_at", "name", "updated_at", "write"}
	keysOf := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	reads := []struct {
		path, bearer string
		items        func(body []byte) []map[string]any
		keys         []string
	}{
		{"/v1/tokens", jwt, func(b []byte) []map[string]any {
			var v struct{ Tokens []map[string]any }
			_ = json.Unmarshal(b, &v)
			return v.Tokens
		}, viewKeys},
		{"/v1/tokens/" + tok.ID, jwt, func(b []byte) []map[string]any {
			var v map[string]any
			_ = json.Unmarshal(b, &v)
			return []map[string]any{v}
		}, viewKeys},
		{"/v1/admin/tokens", e.admin, func(b []byte) []map[string]any {
			var v struct{ Tokens []map[string]any }
			_ = json.Unmarshal(b, &v)
			return v.Tokens
		}, viewKeys},
		{"/_/token", jwt, func(b []byte) []map[string]any {
			var v []map[string]any
			_ = json.Unmarshal(b, &v)
			return v
		}, compatKeys},
		{"/v1/admin/events?limit=500", e.admin, nil, nil},
		{"/v1/admin/events?limit=500&type=auth.failure", e.admin, nil, nil},
		{"/v1/admin/users", e.admin, nil, nil},
		{"/v1/auth/me", regen.Token, nil, nil},
	}
	for _, rd := range reads {
		t.Run("GET "+rd.path, func(t *testing.T) {
			e := tokAs(e, t)
			r := e.do("GET", rd.path, rd.bearer, nil, 200, nil)
			for _, v := range values {
				if bytes.Contains(r.Body, []byte(v)) || bytes.Contains(r.Body, []byte(v[len(app.TokenPrefix):len(app.TokenPrefix)+36])) {
					t.Errorf("response carries a token value: %s", r.Body)
				}
			}
			if rd.items == nil {
				return
			}
			items := rd.items(r.Body)
			if len(items) == 0 {
				t.Fatalf("no items in %s", r.Body)
			}
			for _, it := range items {
				if got := keysOf(it); fmt.Sprint(got) != fmt.Sprint(rd.keys) {
					t.Errorf("keys %v, want %v", got, rd.keys)
				}
			}
		})
	}
	evs, body := tokEvents(e)
	if len(evs) < 20 {
		t.Errorf("only %d events; the test expects the traffic above to be audited", len(evs))
	}
	if s := logs.String(); s == "" {
		t.Log("the server wrote no log lines")
	}

	// Close the server and the database, then read the file.
	e.srv.Close()
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(e.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, []byte(tok.ID)) || !bytes.Contains(file, []byte(`"ro-2"`)) {
		t.Fatalf("the database file does not hold the tokens at all; the check below would prove nothing")
	}
	sinks := map[string][]byte{"events response": body, "server log": []byte(logs.String()), "database file": file}
	for _, v := range values {
		for name, b := range sinks {
			for _, needle := range []string{v, v[len(app.TokenPrefix) : len(app.TokenPrefix)+36]} {
				if bytes.Contains(b, []byte(needle)) {
					t.Errorf("%s contains the value (or its random part) of a token", name)
				}
			}
		}
	}
}

// Rotating the JWT secret kills JWTs, not access tokens (their HMAC key is separate).
func TestTokenSurvivesJWTSecretRotation(t *testing.T) {
	e := newEnv(t)
	_, jwt := e.user("alice", app.RoleUser)
	tok := tokCreate(e, jwt, map[string]any{"name": "ci"})
	ro := tokCreate(e, jwt, map[string]any{"name": "ro", "write": false})
	adm := tokCreate(e, e.admin, map[string]any{"name": "adm"})

	restart := func(t *testing.T, jwtSecret, hashKey string) *env {
		cfg := app.Config{JWTSecret: []byte(jwtSecret), BcryptCost: 4, TokenHashKey: []byte(hashKey)}
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc, err := app.New(cfg, app.Deps{Store: e.db, Clock: e.clock, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api.New(svc, api.Config{}, logger).Handler())
		t.Cleanup(srv.Close)
		c := *e
		c.t, c.srv, c.svc = t, srv, svc
		return &c
	}
	t.Run("new JWT secret, same hash key", func(t *testing.T) {
		e2 := restart(t, strings.Repeat("r", 40), "token-hash-key-for-tests")
		tokRejected(e2, jwt, "old user JWT")
		tokRejected(e2, e.admin, "old admin JWT")
		tokWorks(e2, tok.Token, "write token")
		tokWorks(e2, ro.Token, "read-only token")
		tokWorks(e2, adm.Token, "admin token")
		e2.do("POST", "/v1/tokens", tok.Token, map[string]any{"name": "after-rotation"}, 201, nil)
		tokWantScope(t, e2.raw("POST", "/v1/tokens", ro.Token, map[string]any{"name": "x"}), "read-only token after rotation")
		e2.do("GET", "/v1/admin/users", adm.Token, nil, 200, nil)
		tokWorks(e2, e2.login("alice", "password-alice"), "JWT issued under the new secret")
	})
	t.Run("control: other hash key", func(t *testing.T) {
		e3 := restart(t, strings.Repeat("s", 40), "another-token-hash-key")
		tokRejected(e3, tok.Token, "token under another hash key")
		tokWorks(e3, jwt, "JWT under the same JWT secret")
	})
	tokWorks(e, tok.Token, "token on the original server")
}

// Another user's token is invisible: 404 on every route, by id and by name.
func TestTokenOwnership(t *testing.T) {
	e := newEnv(t)
	_, alice := e.user("alice", app.RoleUser)
	_, bob := e.user("bobby", app.RoleUser)
	a := tokCreate(e, alice, map[string]any{"name": "ci"})
	bt := tokCreate(e, bob, map[string]any{"name": "bob-token"})
	for _, bearer := range []struct{ name, v string }{{"bob's session", bob}, {"bob's token", bt.Token}, {"admin session", e.admin}} {
		cases := []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/tokens/" + a.ID, nil},
			{"PATCH", "/v1/tokens/" + a.ID, map[string]any{"active": false}},
			{"DELETE", "/v1/tokens/" + a.ID, nil},
			{"POST", "/v1/tokens/" + a.ID + "/regenerate", nil},
			{"PUT", "/_/token", map[string]any{"name": "ci", "active": false}},
			{"DELETE", "/_/token", map[string]any{"name": "ci"}},
			{"GET", "/_/token/value?name=ci", nil},
		}
		for _, c := range cases {
			t.Run(bearer.name+"/"+c.method+" "+c.path, func(t *testing.T) {
				tokWantStatus(t, tokAs(e, t).raw(c.method, c.path, bearer.v, c.body), 404, "", "foreign token")
			})
		}
		for _, v := range tokList(e, bearer.v) {
			if v.ID == a.ID {
				t.Errorf("%s lists alice's token", bearer.name)
			}
		}
	}
	tokWorks(e, a.Token, "alice's token untouched")
	if v := tokGet(e, alice, a.ID); !v.Active || v.Name != "ci" {
		t.Errorf("alice's token changed: %+v", v)
	}
}
