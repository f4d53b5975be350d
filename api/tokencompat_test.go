package api_test

import (
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The name-addressed /_/token routes name the fields their body has: an expiry refused there
// is expiration_date (code, field and message), never the native expires_at; the native
// routes keep theirs.
func TestTokenCompatErrorsNameItsFields(t *testing.T) {
	e := newEnv(t, withConfig(func(c *app.Config) { c.TokenMaxLifetime = 60 * 24 * time.Hour }))
	_, jwt := e.user("alice", app.RoleUser)
	e.do("POST", "/_/token", jwt, map[string]any{"name": "legacy"}, 201, nil)
	ms := func(s string) int64 { return tokDate(s).UnixMilli() }
	cases := []struct {
		name, method, path string
		body               map[string]any
		code, field, msg   string
	}{
		{"create, date passed", "POST", "/_/token", map[string]any{"name": "old", "expiration_date": ms("2026-01-01")}, "invalid_expiration_date", "expiration_date", "expiration_date must be a future date"},
		{"create, today", "POST", "/_/token", map[string]any{"name": "old", "expiration_date": ms("2026-11-23")}, "invalid_expiration_date", "expiration_date", "expiration_date must be a future date"},
		{"create, beyond the maximum lifetime", "POST", "/_/token", map[string]any{"name": "far", "expiration_date": ms("2027-06-01")}, "invalid_expiration_date", "expiration_date", "expiration_date exceeds this server's maximum token lifetime"},
		{"update, date passed", "PUT", "/_/token", map[string]any{"name": "legacy", "expiration_date": ms("2026-01-01")}, "invalid_expiration_date", "expiration_date", "expiration_date must be a future date"},
		{"update, beyond the maximum lifetime", "PUT", "/_/token", map[string]any{"name": "legacy", "expiration_date": ms("2027-06-01")}, "invalid_expiration_date", "expiration_date", "expiration_date exceeds"},
		{"update, name missing", "PUT", "/_/token", map[string]any{"expiration_date": ms("2026-12-01")}, "invalid_name", "name", "name must be 1-64 characters"},
		{"delete, name blank", "DELETE", "/_/token", map[string]any{"name": "  "}, "invalid_name", "name", "name must be 1-64 characters"},
		// The native shape keeps its own name.
		{"native create, date passed", "POST", "/v1/tokens", map[string]any{"name": "old", "expires_at": "2026-01-01"}, "invalid_expires_at", "expires_at", "expires_at must be a future date"},
		{"native create, beyond the maximum lifetime", "POST", "/v1/tokens", map[string]any{"name": "far", "expires_at": "2027-06-01"}, "invalid_expires_at", "expires_at", "expires_at exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tokAs(e, t).raw(c.method, c.path, jwt, c.body)
			ruleWant(t, r, 422, c.code, c.field, c.msg)
		})
	}
}

// A token created inactive through /_/token is made in one transaction: one write, one
// token.create event, no token.update, and its value never works.
func TestTokenCompatInactiveCreateIsOneTransaction(t *testing.T) {
	cases := []struct {
		name   string
		body   map[string]any
		active bool
	}{
		{"inactive", map[string]any{"name": "off", "active": false}, false},
		{"inactive read-only with a date", map[string]any{"name": "off", "active": false, "write": false, "expiration_date": tokDate("2027-01-15").UnixMilli()}, false},
		{"active", map[string]any{"name": "on", "active": true}, true},
		{"default", map[string]any{"name": "on"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, store := usageEnv(t)
			_, jwt := e.user("alice", app.RoleUser)
			before := store.updates.Load()
			var v struct {
				ID     string `json:"id"`
				Active bool   `json:"active"`
				Token  string `json:"token"`
			}
			e.do("POST", "/_/token", jwt, c.body, 201, &v)
			if w := store.updates.Load() - before; w != 1 {
				t.Errorf("creation made %d write transactions, want 1", w)
			}
			if v.Active != c.active || !app.WellFormedToken(v.Token) {
				t.Fatalf("created %+v, want active %v", v, c.active)
			}
			evs, _ := tokEvents(e)
			creates, updates := 0, 0
			for _, ev := range evs {
				if ev.TargetID == v.ID {
					switch ev.Action {
					case "token.create":
						creates++
					case "token.update":
						updates++
					}
				}
			}
			if creates != 1 || updates != 0 {
				t.Errorf("%d token.create and %d token.update events, want 1 and 0", creates, updates)
			}
			if c.active {
				tokWorks(e, v.Token, "active compat token")
			} else {
				tokRejected(e, v.Token, "inactive compat token")
			}
			// The native route still refuses an inactive new token.
			r := e.raw("POST", "/v1/tokens", jwt, map[string]any{"name": "native", "active": false})
			ruleWant(t, r, 422, "invalid_active", "active", "active")
		})
	}
}
