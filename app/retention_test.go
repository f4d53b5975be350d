package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

func TestApplyRetention(t *testing.T) {
	now := testenv.Epoch // the service's clock stands there
	day := 24 * time.Hour
	cases := []struct {
		name                 string
		eventKeep, taskKeep  time.Duration
		wantEvents, wantTask int // purged
		leftEvents           []string
		leftTasks            []string
	}{
		{"both kept forever", 0, 0, 0, 0, []string{"e-new", "e-mid", "e-old"}, []string{"t-new", "t-running", "t-old"}},
		{"events 30 days, tasks forever", 30 * day, 0, 1, 0, []string{"retention.purge", "e-new", "e-mid"}, []string{"t-new", "t-running", "t-old"}},
		{"both 5 days", 5 * day, 5 * day, 2, 1, []string{"retention.purge", "e-new"}, []string{"t-new", "t-running"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			env := testenv.NewService(t, testenv.WithConfig(func(c *app.Config) {
				c.TokenHashKey, c.EventRetention, c.TaskRetention = []byte("k"), tc.eventKeep, tc.taskKeep
			}))
			svc, db := env.Service, env.DB
			ago := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
			err := db.Update(ctx, func(tx app.Tx) error {
				for _, e := range []app.Event{
					{Time: *ago(400 * day), Action: "e-old", Result: app.ResultSuccess, HostID: "h1"},
					{Time: *ago(10 * day), Action: "e-mid", Result: app.ResultSuccess, UserID: "u1"},
					{Time: *ago(time.Hour), Action: "e-new", Result: app.ResultSuccess, HostID: "h1"},
				} {
					if err := tx.AddEvent(&e); err != nil {
						return err
					}
				}
				for _, task := range []app.Task{
					{ID: "t-old", HostID: "h1", State: app.TaskSucceeded, CreatedAt: *ago(20 * day), FinishedAt: ago(20 * day)},
					{ID: "t-running", HostID: "h1", State: app.TaskRunning, CreatedAt: *ago(19 * day)},
					{ID: "t-new", HostID: "h1", State: app.TaskFailed, CreatedAt: *ago(day), FinishedAt: ago(day)},
				} {
					if err := tx.PutTask(task); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			ev, tk := svc.ApplyRetention(ctx)
			if ev != tc.wantEvents || tk != tc.wantTask {
				t.Fatalf("purged %d events and %d tasks, want %d and %d", ev, tk, tc.wantEvents, tc.wantTask)
			}
			var gotEvents, gotTasks []string
			err = db.View(ctx, func(tx app.Tx) error {
				page, err := tx.QueryEvents(app.EventQuery{Limit: 100})
				if err != nil {
					return err
				}
				for _, e := range page.Events {
					gotEvents = append(gotEvents, e.Action)
				}
				ts, err := tx.ListTasks("", 0)
				for _, task := range ts {
					gotTasks = append(gotTasks, task.ID)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(gotEvents, ",") != strings.Join(tc.leftEvents, ",") {
				t.Errorf("events left %v, want %v", gotEvents, tc.leftEvents)
			}
			if strings.Join(gotTasks, ",") != strings.Join(tc.leftTasks, ",") {
				t.Errorf("tasks left %v, want %v", gotTasks, tc.leftTasks)
			}
			// A second pass finds nothing more and records nothing.
			if ev, tk := svc.ApplyRetention(ctx); ev+tk != 0 {
				t.Errorf("second pass purged %d events and %d tasks", ev, tk)
			}
		})
	}
}
