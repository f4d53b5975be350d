package api_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// writeCountingStore counts the write transactions that reach the store.
type writeCountingStore struct {
	app.Store
	updates atomic.Int64
}

func (c *writeCountingStore) Update(ctx context.Context, fn func(app.Tx) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, fn)
}

// usageEnv is a server whose store counts writes and whose token usage is written only when
// the test flushes it.
func usageEnv(t *testing.T, opts ...envOption) (*env, *writeCountingStore) {
	var store *writeCountingStore
	opts = append(opts, withConfig(func(c *app.Config) { c.TokenUseFlushInterval = -1 }))
	e := newEnvOn(t, func(db app.Store) app.Store { store = &writeCountingStore{Store: db}; return store }, opts...)
	return e, store
}

// usageEvents returns the token.use events of a token, oldest first.
func usageEvents(e *env, tokenID string) []app.Event {
	e.t.Helper()
	var page app.EventPage
	e.do("GET", "/v1/admin/events?limit=500&type="+app.ActionTokenUse, tokAdmin(e), nil, 200, &page)
	var out []app.Event
	for i := len(page.Events) - 1; i >= 0; i-- {
		if page.Events[i].TokenID == tokenID {
			out = append(out, page.Events[i])
		}
	}
	return out
}

// Every request made with an access token is recorded, reads included: uses are counted in
// memory per token and minute (count, last route, last address) and written by a flush in
// one transaction; the requests themselves write nothing.
func TestTokenUsageAudit(t *testing.T) {
	type burst struct {
		advance time.Duration // clock move before the burst
		n       int
		path    string // GET route of the burst
	}
	cases := []struct {
		name   string
		bursts []burst
		want   []int // counts of the usage records, oldest first
		last   []string
	}{
		{"one GET", []burst{{0, 1, "/v1/auth/me"}}, []int{1}, []string{"GET /v1/auth/me"}},
		{"40 GETs in a minute", []burst{{0, 25, "/v1/tokens"}, {20 * time.Second, 15, "/v1/auth/me"}}, []int{40}, []string{"GET /v1/auth/me"}},
		{"two minutes", []burst{{0, 7, "/v1/user/hosts"}, {time.Minute, 3, "/v1/tokens"}}, []int{7, 3}, []string{"GET /v1/user/hosts", "GET /v1/tokens"}},
		{"an hour apart", []burst{{0, 2, "/v1/auth/me"}, {time.Hour, 5, "/v1/user/ssh-keys"}}, []int{2, 5}, []string{"GET /v1/auth/me", "GET /v1/user/ssh-keys"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, store := usageEnv(t)
			_, jwt := e.user("alice", app.RoleUser)
			tok := tokCreate(e, jwt, map[string]any{"name": "ci", "write": false})
			for _, b := range c.bursts {
				e.clock.Add(b.advance)
				before := store.updates.Load()
				for i := 0; i < b.n; i++ {
					e.do("GET", b.path, tok.Token, nil, 200, nil)
				}
				if w := store.updates.Load() - before; w != 0 {
					t.Fatalf("%d GETs with a token made %d write transactions, want none", b.n, w)
				}
			}
			if got := usageEvents(e, tok.ID); len(got) != 0 {
				t.Fatalf("usage written before a flush: %+v", got)
			}
			before := store.updates.Load()
			if err := e.svc.FlushTokenUse(context.Background()); err != nil {
				t.Fatal(err)
			}
			if w := store.updates.Load() - before; w != 1 {
				t.Errorf("flush made %d write transactions, want 1", w)
			}
			evs := usageEvents(e, tok.ID)
			if len(evs) != len(c.want) {
				t.Fatalf("%d usage records, want %d: %+v", len(evs), len(c.want), evs)
			}
			for i, ev := range evs {
				if ev.Count != c.want[i] || ev.Message != "last request: "+c.last[i] || ev.SourceIP != "127.0.0.1" ||
					ev.TokenName != "ci" || ev.UserID != tok.UserID || ev.ActorName != "alice" || ev.AuthMethod != "token" || ev.Result != app.ResultSuccess {
					t.Errorf("usage record %d = %+v, want count %d, last %q", i, ev, c.want[i], c.last[i])
				}
			}
			// A second flush has nothing left to write.
			before = store.updates.Load()
			if err := e.svc.FlushTokenUse(context.Background()); err != nil {
				t.Fatal(err)
			}
			if w := store.updates.Load() - before; w != 0 {
				t.Errorf("an empty flush made %d write transactions", w)
			}
			if v := tokGet(e, jwt, tok.ID); v.LastUsedAt == nil || v.LastUsedIP != "127.0.0.1" {
				t.Errorf("last use not recorded: %+v", v)
			}
		})
	}
}

// A refused request made with an access token is an event of its own, apart from the
// aggregated usage; it is still counted there when the token itself was good.
func TestTokenRefusalsAreOwnEvents(t *testing.T) {
	e, _ := usageEnv(t)
	_, alice := e.user("alice", app.RoleUser)
	ro := tokCreate(e, alice, map[string]any{"name": "ro", "write": false})
	gone := tokCreate(e, alice, map[string]any{"name": "gone"})
	e.do("DELETE", "/v1/tokens/"+gone.ID, alice, nil, 204, nil)
	cases := []struct {
		name         string
		method, path string
		token        app.CreatedToken
		body         any
		status       int
		action       string // of the refusal's own event
		result       string
		counted      bool // in the token's usage
	}{
		{"admin route with a user's token", "GET", "/v1/admin/users", ro, nil, 403, "admin.access", app.ResultDenied, true},
		{"write with a read-only token", "POST", "/v1/user/ssh-keys/generate", ro, nil, 403, "ssh_key.add", app.ResultDenied, true},
		{"revoked token", "GET", "/v1/auth/me", gone, nil, 401, "auth.failure", app.ResultFailure, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := tokAs(e, t)
			e.clock.Add(time.Minute) // each case in a minute of its own
			e.do(c.method, c.path, c.token.Token, c.body, c.status, nil)
			evs, _ := tokEvents(e)
			match := func(ev app.Event) bool {
				return ev.Action == c.action && ev.Result == c.result && ev.Time.Equal(e.clock.Now()) &&
					strings.HasPrefix(ev.AuthMethod, "token") && (c.action == "auth.failure" || ev.TokenID == c.token.ID)
			}
			if _, ok := tokFindEvent(evs, match); !ok {
				t.Errorf("no %s/%s event of its own for the refused request", c.action, c.result)
			}
			if err := e.svc.FlushTokenUse(context.Background()); err != nil {
				t.Fatal(err)
			}
			var counted bool
			for _, ev := range usageEvents(e, c.token.ID) {
				counted = counted || (ev.Time.Equal(e.clock.Now()) && ev.Message == "last request: "+c.method+" "+c.path && ev.Count == 1)
			}
			if counted != c.counted {
				t.Errorf("counted in the token's usage: %v, want %v", counted, c.counted)
			}
		})
	}
}
