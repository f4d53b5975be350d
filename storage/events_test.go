package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// seedEvents stores events with controlled times, several sharing a timestamp, and returns
// them newest first (the order QueryEvents must produce).
func seedEvents(t testing.TB, db *DB) []app.Event {
	t.Helper()
	var evs []app.Event
	hosts := []string{"h1", "h2", "h10", ""}
	users := []string{"u1", "u2", ""}
	types := []string{"host.create", "auth.login", "host.stop"}
	for i := range 60 {
		sec := i
		if i%5 == 1 || i%5 == 2 { // triples of equal timestamps
			sec = i - i%5
		}
		evs = append(evs, app.Event{
			Time:   at(sec),
			Action: types[i%3],
			Result: app.ResultSuccess,
			HostID: hosts[i%4],
			UserID: users[i%3/2+i%2], // mixes u1/u2/"" independently of type
		})
	}
	update(t, db, func(tx app.Tx) error {
		for i := range evs {
			evs[i].ID = ""
			if err := tx.AddEvent(&evs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	slices.Reverse(evs) // insertion order is time order with ties in insertion order
	return evs
}

func filterEvents(evs []app.Event, q app.EventQuery) []string {
	out := []string{}
	for _, e := range evs {
		if q.HostID != "" && e.HostID != q.HostID || q.UserID != "" && e.UserID != q.UserID || q.Type != "" && e.Action != q.Type {
			continue
		}
		if !q.Since.IsZero() && e.Time.Before(q.Since) || !q.Until.IsZero() && e.Time.After(q.Until) {
			continue
		}
		out = append(out, e.ID)
	}
	return out
}

func TestAddEvent(t *testing.T) {
	db := openTemp(t)
	e := app.Event{Time: at(7), Action: "x", HostID: "h", UserID: "u", Message: "hello"}
	update(t, db, func(tx app.Tx) error { return tx.AddEvent(&e) })
	if len(e.ID) != 32 {
		t.Fatalf("ID = %q, want 32 hex chars", e.ID)
	}
	var zero app.Event
	update(t, db, func(tx app.Tx) error { return tx.AddEvent(&zero) })
	if zero.Time.IsZero() || time.Since(zero.Time) > time.Minute {
		t.Fatalf("zero time not set to now: %v", zero.Time)
	}
	view(t, db, func(tx app.Tx) error {
		p := must[app.EventPage](t)(tx.QueryEvents(app.EventQuery{HostID: "h"}))
		if len(p.Events) != 1 || p.Events[0] != e || p.NextCursor != "" {
			t.Fatalf("got %+v, want %+v", p, e)
		}
		return nil
	})
}

func TestQueryEvents(t *testing.T) {
	db := openTemp(t)
	evs := seedEvents(t, db)
	tests := []struct {
		name string
		q    app.EventQuery
	}{
		{"all", app.EventQuery{}},
		{"host", app.EventQuery{HostID: "h1"}},
		{"host is not a prefix match", app.EventQuery{HostID: "h"}},
		{"host h10", app.EventQuery{HostID: "h10"}},
		{"user", app.EventQuery{UserID: "u2"}},
		{"type", app.EventQuery{Type: "auth.login"}},
		{"host+user", app.EventQuery{HostID: "h2", UserID: "u1"}},
		{"host+type", app.EventQuery{HostID: "h1", Type: "host.create"}},
		{"user+type", app.EventQuery{UserID: "u1", Type: "host.stop"}},
		{"host+user+type", app.EventQuery{HostID: "h2", UserID: "u2", Type: "host.create"}},
		{"since", app.EventQuery{Since: at(40)}},
		{"until", app.EventQuery{Until: at(20)}},
		{"since+until on shared timestamps", app.EventQuery{Since: at(10), Until: at(25)}},
		{"single instant", app.EventQuery{Since: at(15), Until: at(15)}},
		{"between instants", app.EventQuery{Since: at(16).Add(-time.Nanosecond), Until: at(16).Add(-time.Nanosecond)}},
		{"until < since", app.EventQuery{Since: at(30), Until: at(20)}},
		{"after everything", app.EventQuery{Since: at(1000)}},
		{"before everything", app.EventQuery{Until: at(-1)}},
		{"host+range", app.EventQuery{HostID: "h2", Since: at(10), Until: at(45)}},
		{"user+range", app.EventQuery{UserID: "u1", Since: at(5), Until: at(35)}},
		{"type+range", app.EventQuery{Type: "host.stop", Since: at(20), Until: at(50)}},
		{"unknown host", app.EventQuery{HostID: "zz"}},
	}
	for _, tc := range tests {
		want := filterEvents(evs, tc.q)
		t.Run(tc.name, func(t *testing.T) {
			// One big page.
			q := tc.q
			q.Limit = 500
			view(t, db, func(tx app.Tx) error {
				p := must[app.EventPage](t)(tx.QueryEvents(q))
				eqIDs(t, "events", eventIDs(p.Events), want)
				if p.NextCursor != "" {
					t.Fatalf("NextCursor = %q on the last page", p.NextCursor)
				}
				return nil
			})
			// Every page size, following cursors.
			for _, size := range []int{1, 2, 3, 7} {
				q := tc.q
				q.Limit = size
				var got []string
				for pages := 0; ; pages++ {
					if pages > len(evs)+1 {
						t.Fatal("cursor paging does not terminate")
					}
					var p app.EventPage
					view(t, db, func(tx app.Tx) error {
						p = must[app.EventPage](t)(tx.QueryEvents(q))
						return nil
					})
					if len(p.Events) > size {
						t.Fatalf("page of %d events, limit %d", len(p.Events), size)
					}
					got = append(got, eventIDs(p.Events)...)
					if p.NextCursor == "" {
						break
					}
					if len(p.Events) != size || p.NextCursor != p.Events[size-1].ID {
						t.Fatalf("NextCursor %q with a page of %d", p.NextCursor, len(p.Events))
					}
					q.Cursor = p.NextCursor
				}
				eqIDs(t, fmt.Sprintf("paged by %d", size), got, want)
			}
		})
	}
	t.Run("equal timestamps keep insertion order", func(t *testing.T) {
		view(t, db, func(tx app.Tx) error {
			p := must[app.EventPage](t)(tx.QueryEvents(app.EventQuery{Since: at(0), Until: at(0)}))
			if len(p.Events) != 3 || p.Events[0].ID <= p.Events[1].ID || p.Events[1].ID <= p.Events[2].ID {
				t.Fatalf("got %v", eventIDs(p.Events))
			}
			return nil
		})
	})
	t.Run("invalid cursor", func(t *testing.T) {
		for _, c := range []string{"zz", "abcd", "00112233445566778899aabbccddeeff00"} {
			err := db.View(context.Background(), func(tx app.Tx) error {
				_, err := tx.QueryEvents(app.EventQuery{Cursor: c})
				return err
			})
			var ae *app.Error
			if !errors.As(err, &ae) || ae.Kind != app.KindBadRequest || ae.Code != "invalid_cursor" {
				t.Errorf("cursor %q: err = %v", c, err)
			}
		}
	})
	t.Run("CountEventsSince", func(t *testing.T) {
		view(t, db, func(tx app.Tx) error {
			for _, since := range []time.Time{{}, at(0), at(15), at(16), at(59), at(60)} {
				want := len(filterEvents(evs, app.EventQuery{Since: since}))
				if got := must[int](t)(tx.CountEventsSince(since)); got != want {
					t.Errorf("CountEventsSince(%v) = %d, want %d", since, got, want)
				}
			}
			return nil
		})
	})
}

func TestQueryEventsLimits(t *testing.T) {
	db := openTemp(t)
	update(t, db, func(tx app.Tx) error {
		for i := range 600 {
			if err := tx.AddEvent(&app.Event{Time: at(i), Action: "a"}); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tc := range []struct{ limit, want int }{{0, DefaultEventLimit}, {-3, DefaultEventLimit}, {10, 10}, {500, 500}, {10000, MaxEventLimit}} {
		view(t, db, func(tx app.Tx) error {
			p := must[app.EventPage](t)(tx.QueryEvents(app.EventQuery{Limit: tc.limit}))
			if len(p.Events) != tc.want || p.NextCursor == "" {
				t.Errorf("limit %d: %d events, cursor %q", tc.limit, len(p.Events), p.NextCursor)
			}
			return nil
		})
	}
}

// TestQueryEventsSeeks proves queries visit only the rows they return (plus one), however
// many events lie outside the range or belong to others.
func TestQueryEventsSeeks(t *testing.T) {
	db := openTemp(t)
	update(t, db, func(tx app.Tx) error {
		for i := range 5000 {
			e := app.Event{Time: at(i), Action: fmt.Sprintf("type%d", i%7), HostID: fmt.Sprintf("h%d", i%50), UserID: fmt.Sprintf("u%d", i%13)}
			if err := tx.AddEvent(&e); err != nil {
				return err
			}
		}
		return nil
	})
	for _, q := range []app.EventQuery{
		{HostID: "h7", Since: at(2000), Until: at(4000)},
		{HostID: "h7", Until: at(2500)},
		{UserID: "u3", Since: at(1000), Until: at(3000)},
		{Type: "type2", Since: at(1000), Until: at(3000)},
		{Since: at(1000), Until: at(3000)},
		{HostID: "h7", Since: at(2400), Until: at(2600), Limit: 50}, // fewer rows than the limit
	} {
		view(t, db, func(atx app.Tx) error {
			p, visited, err := atx.(*tx).queryEvents(q)
			if err != nil {
				t.Fatal(err)
			}
			if visited > len(p.Events)+1 {
				t.Errorf("%+v: visited %d index entries for %d events", q, visited, len(p.Events))
			}
			if len(p.Events) == 0 {
				t.Errorf("%+v: no events", q)
			}
			return nil
		})
	}
}
