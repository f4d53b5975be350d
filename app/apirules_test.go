package app_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

var rulesSystem = app.Principal{Username: "system", Role: app.RoleAdmin, Method: "system"}

// rulesUser creates an account and returns a principal for it, as a JWT would give.
func rulesUser(t *testing.T, svc *app.Service, name string, role app.Role) app.Principal {
	t.Helper()
	u, err := svc.CreateUser(context.Background(), rulesSystem, app.CreateUserInput{Username: name, Password: "password-" + name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return app.Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "jwt", SourceIP: "192.0.2.1"}
}

// rulesUsage returns the token.use events of a token, oldest first.
func rulesUsage(t *testing.T, svc *app.Service, tokenID string) []app.Event {
	t.Helper()
	page, err := svc.ListEvents(context.Background(), rulesSystem, app.EventQuery{Type: app.ActionTokenUse, Limit: app.MaxEventLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []app.Event
	for i := len(page.Events) - 1; i >= 0; i-- {
		if page.Events[i].TokenID == tokenID {
			out = append(out, page.Events[i])
		}
	}
	return out
}

// Two administrators disabling (or deleting) each other at the same moment cannot both
// succeed: the last-admin rule is checked inside each change's transaction.
func TestLastAdminRuleHoldsUnderRaces(t *testing.T) {
	type op func(svc *app.Service, actor app.Principal, target string) error
	patch := func(in app.PatchUserInput) op {
		return func(svc *app.Service, actor app.Principal, target string) error {
			_, err := svc.PatchUser(context.Background(), actor, target, in)
			return err
		}
	}
	disabled, viewer := app.UserDisabled, app.RoleViewer
	far := testenv.Epoch.AddDate(1, 0, 0)
	cases := []struct {
		name string
		op   op
	}{
		{"disable", patch(app.PatchUserInput{Status: &disabled})},
		{"demote", patch(app.PatchUserInput{Role: &viewer})},
		{"expire", func(svc *app.Service, actor app.Principal, target string) error {
			_, err := svc.SetExpiry(context.Background(), actor, target, &far)
			return err
		}},
		{"delete", func(svc *app.Service, actor app.Principal, target string) error {
			return svc.DeleteUser(context.Background(), actor, target)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for round := 0; round < 5; round++ {
				env := testenv.NewService(t)
				svc := env.Service
				a := rulesUser(t, svc, "admin-a", app.RoleAdmin)
				b := rulesUser(t, svc, "admin-b", app.RoleAdmin)
				var wg sync.WaitGroup
				errs := make([]error, 2)
				start := make(chan struct{})
				for i, pair := range [][2]app.Principal{{a, b}, {b, a}} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						errs[i] = c.op(svc, pair[0], pair[1].UserID)
					}()
				}
				close(start)
				wg.Wait()
				ok, refused := 0, 0
				for _, err := range errs {
					switch {
					case err == nil:
						ok++
					case errors.Is(err, &app.Error{Kind: app.KindConflict, Code: app.CodeLastAdmin}):
						refused++
					default:
						t.Fatalf("unexpected error: %v", err)
					}
				}
				if ok != 1 || refused != 1 {
					t.Fatalf("round %d: %d succeeded, %d refused with last_admin; want 1 and 1", round, ok, refused)
				}
			}
		})
	}
}

// The listing limits live in app: out of range is a 400 invalid_limit whichever door asks.
func TestListingLimits(t *testing.T) {
	svc := testenv.NewService(t).Service
	ctx := context.Background()
	for _, c := range []struct {
		name string
		call func() error
		ok   bool
	}{
		{"tasks default", func() error { _, err := svc.ListTasks(ctx, rulesSystem, app.TaskFilter{}); return err }, true},
		{"tasks at max", func() error {
			_, err := svc.ListTasks(ctx, rulesSystem, app.TaskFilter{Limit: app.MaxTaskLimit})
			return err
		}, true},
		{"tasks over max", func() error {
			_, err := svc.ListTasks(ctx, rulesSystem, app.TaskFilter{Limit: app.MaxTaskLimit + 1})
			return err
		}, false},
		{"tasks negative", func() error { _, err := svc.ListTasks(ctx, rulesSystem, app.TaskFilter{Limit: -1}); return err }, false},
		{"events at max", func() error {
			_, err := svc.ListEvents(ctx, rulesSystem, app.EventQuery{Limit: app.MaxEventLimit})
			return err
		}, true},
		{"events over max", func() error {
			_, err := svc.ListEvents(ctx, rulesSystem, app.EventQuery{Limit: app.MaxEventLimit + 1})
			return err
		}, false},
		{"parse empty", func() error { _, err := app.ParseLimit("", 10); return err }, true},
		{"parse 10", func() error { _, err := app.ParseLimit("10", 10); return err }, true},
		{"parse 0", func() error { _, err := app.ParseLimit("0", 10); return err }, false},
		{"parse 11", func() error { _, err := app.ParseLimit("11", 10); return err }, false},
		{"parse word", func() error { _, err := app.ParseLimit("ten", 10); return err }, false},
		{"parse fraction", func() error { _, err := app.ParseLimit("1.5", 10); return err }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ae := app.AsError(err)
			if err == nil || ae.Kind != app.KindBadRequest || ae.Code != app.CodeInvalidLimit || ae.Field != "limit" || ae.Message == "" {
				t.Fatalf("error %#v, want a 400 %s naming limit", err, app.CodeInvalidLimit)
			}
		})
	}
}

// Token usage counted in memory is written when the service's background work stops, and
// the periodic flush writes a minute's record once that minute is over.
func TestTokenUseFlushes(t *testing.T) {
	cases := []struct {
		name     string
		interval time.Duration
		uses     int
		// before: records expected while the minute is still running; after: once the
		// clock is past it (periodic flush) or the service stopped.
		before, after int
		stop          bool
	}{
		{"written at shutdown", -1, 12, 0, 1, true},
		{"written when the minute is over", 5 * time.Millisecond, 7, 0, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testenv.NewService(t, testenv.WithConfig(func(cfg *app.Config) {
				cfg.TokenUseFlushInterval, cfg.ReconcileInterval = c.interval, -1
			}))
			svc := env.Service
			ctx := env.Start()
			p := rulesUser(t, svc, "alice", app.RoleUser)
			name := "ci"
			tok, err := svc.CreateToken(ctx, p, app.TokenInput{Name: &name})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < c.uses; i++ {
				if _, err := svc.AuthenticateRequest(ctx, "198.51.100.7", fmt.Sprintf("GET /v1/thing/%d", i), tok.Token); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(20 * time.Millisecond) // several periodic flushes, when there are any
			if got := rulesUsage(t, svc, tok.ID); len(got) != c.before {
				t.Fatalf("%d usage records during the minute, want %d", len(got), c.before)
			}
			if c.stop {
				env.Stop()
			} else {
				env.Clock.Add(time.Minute)
			}
			deadline := time.Now().Add(5 * time.Second)
			var got []app.Event
			for {
				got = rulesUsage(t, svc, tok.ID)
				if len(got) >= c.after || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if len(got) != c.after {
				t.Fatalf("%d usage records, want %d", len(got), c.after)
			}
			ev := got[0]
			if ev.Count != c.uses || ev.SourceIP != "198.51.100.7" || ev.Message != fmt.Sprintf("last request: GET /v1/thing/%d", c.uses-1) {
				t.Errorf("usage record %+v", ev)
			}
			v, err := svc.GetToken(context.Background(), p, tok.ID)
			if err != nil || v.LastUsedAt == nil || !v.LastUsedAt.Equal(testenv.Epoch) || v.LastUsedIP != "198.51.100.7" {
				t.Errorf("last use %+v, %v", v, err)
			}
		})
	}
}
