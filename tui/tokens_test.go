package tui

import (
	"context"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The token form offers the expiries the service allows (app.TokenExpiryChoices): within
// TOKEN_MAX_LIFETIME_DAYS, "never" only without one, the default lifetime first, and the
// service's own default when no preset is short enough.
func TestTokenFormFollowsServerExpiryRules(t *testing.T) {
	for _, c := range []struct {
		maxDays      int
		offer, lacks string
		wantDays     int // lifetime of a token created with the first choice
	}{
		{0, "[30 days] 7 days  60 days  90 days  never", "", 30},
		{45, "[30 days] 7 days", "60 days", 30},
		{10, "[7 days]", "30 days", 7},
		{3, "[default]", "never", 3},
	} {
		e := newEnv(t, func(cfg *app.Config) { cfg.TokenMaxLifetime = time.Duration(c.maxDays) * 24 * time.Hour })
		_, alice := e.user("alice", app.RoleUser)
		d := e.open(alice, 80, 24)
		d.press(":tokens", "enter", "c")
		d.contains("Expires  " + c.offer)
		if c.lacks != "" {
			d.lacks(c.lacks)
			d.lacks("never")
		}
		d.press("cli", "ctrl+s")
		d.contains("created access token cli")
		ts, err := e.svc.ListTokens(context.Background(), alice)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts {
			if tk.Name != "cli" {
				continue
			}
			want := e.svc.Now().Truncate(24*time.Hour).AddDate(0, 0, c.wantDays)
			if tk.ExpiresAt == nil || !tk.ExpiresAt.Equal(want) {
				t.Errorf("max %d days: token expires %v, want %v", c.maxDays, tk.ExpiresAt, want)
			}
		}
	}
}
