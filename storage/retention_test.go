package storage

import (
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func TestPurgeEventsBefore(t *testing.T) {
	db := openTemp(t)
	evs := seedEvents(t, db) // newest first, times at(0)..at(59)
	cut := at(30)
	var keep []app.Event
	for _, e := range evs {
		if !e.Time.Before(cut) {
			keep = append(keep, e)
		}
	}
	// In batches of 7 until nothing older is left.
	total := 0
	for {
		var n int
		update(t, db, func(tx app.Tx) error {
			var err error
			n, err = tx.PurgeEventsBefore(cut, 7)
			return err
		})
		if n > 7 {
			t.Fatalf("purged %d in one batch, max 7", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if want := len(evs) - len(keep); total != want {
		t.Fatalf("purged %d events, want %d", total, want)
	}
	// Every index answers exactly the kept events: no dangling index entry is left.
	for _, q := range []app.EventQuery{{}, {HostID: "h1"}, {HostID: "h2"}, {UserID: "u1"}, {UserID: "u2"}, {Type: "auth.login"}, {Type: "host.stop"}} {
		q.Limit = 500
		view(t, db, func(tx app.Tx) error {
			page, err := tx.QueryEvents(q)
			if err != nil {
				return err
			}
			eqIDs(t, "events after purge", eventIDs(page.Events), filterEvents(keep, q))
			return nil
		})
	}
	view(t, db, func(atx app.Tx) error {
		st := atx.(*tx)
		for _, b := range [][]byte{bEventsByHost, bEventsByUser, bEventsByType} {
			c := st.bucket(b).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				key := k[len(k)-eventKeyLen:]
				if st.bucket(bEvents).Get(key) == nil {
					t.Errorf("index %s keeps %x after its event was purged", b, k)
				}
			}
		}
		return nil
	})
}

func TestPurgeTasksBefore(t *testing.T) {
	db := openTemp(t)
	fin := func(sec int) *time.Time { v := at(sec); return &v }
	tasks := []app.Task{
		{ID: "old-done", HostID: "h1", State: app.TaskSucceeded, CreatedAt: at(1), FinishedAt: fin(2)},
		{ID: "old-failed", State: app.TaskFailed, CreatedAt: at(3), FinishedAt: fin(4)},
		{ID: "old-queued", HostID: "h1", State: app.TaskQueued, CreatedAt: at(5)},
		{ID: "old-running", HostID: "h2", State: app.TaskRunning, CreatedAt: at(6)},
		{ID: "finished-late", HostID: "h1", State: app.TaskSucceeded, CreatedAt: at(7), FinishedAt: fin(40)},
		{ID: "new-done", HostID: "h2", State: app.TaskFailed, CreatedAt: at(50), FinishedAt: fin(51)},
	}
	update(t, db, func(tx app.Tx) error {
		for _, task := range tasks {
			if err := tx.PutTask(task); err != nil {
				return err
			}
		}
		return nil
	})
	var n int
	update(t, db, func(tx app.Tx) error {
		var err error
		n, err = tx.PurgeTasksBefore(at(30), 0)
		return err
	})
	if n != 2 {
		t.Fatalf("purged %d tasks, want 2 (old-done, old-failed)", n)
	}
	view(t, db, func(tx app.Tx) error {
		eqIDs(t, "all tasks", taskIDs(must[[]app.Task](t)(tx.ListTasks("", 0))), []string{"new-done", "finished-late", "old-running", "old-queued"})
		eqIDs(t, "h1 tasks", taskIDs(must[[]app.Task](t)(tx.ListTasks("h1", 0))), []string{"finished-late", "old-queued"})
		eqIDs(t, "finished tasks", taskIDs(must[[]app.Task](t)(tx.ListTasksByState(app.TaskSucceeded, app.TaskFailed))), []string{"finished-late", "new-done"})
		if _, err := tx.GetTask("old-done"); err == nil {
			t.Errorf("old-done is still stored")
		}
		return nil
	})
}
