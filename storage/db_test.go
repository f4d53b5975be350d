package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

type boltTx = bolt.Tx

func TestOpenFileModeAndCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if db.db.NoSync {
		t.Error("NoSync is on")
	}
	if err := db.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(context.Background()); err == nil {
		t.Fatal("Check on a closed db succeeded")
	}

	// A looser mode on an existing file is tightened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopen = %v, want 0600", fi.Mode().Perm())
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"explicit", 200 * time.Millisecond, 200 * time.Millisecond},
		{"default", 0, DefaultTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			db2, err := Open(path, Options{Timeout: tc.timeout})
			took := time.Since(start)
			if err == nil {
				db2.Close()
				t.Fatal("second Open succeeded")
			}
			if !errors.Is(err, ErrLocked) || !errors.Is(err, berrors.ErrTimeout) {
				t.Fatalf("err = %v, want ErrLocked", err)
			}
			if took < tc.want-100*time.Millisecond || took > tc.want+2*time.Second { // bbolt retries every 50ms
				t.Fatalf("gave up after %v, want about %v", took, tc.want)
			}
		})
	}
}

func TestContext(t *testing.T) {
	db := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	fn := func(app.Tx) error { called = true; return nil }
	if err := db.Update(ctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("Update: %v", err)
	}
	if err := db.View(ctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("View: %v", err)
	}
	if err := db.Check(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Check: %v", err)
	}
	if called {
		t.Error("fn ran under a cancelled context")
	}
}

func TestUpdateRollsBackOnError(t *testing.T) {
	db := openTemp(t)
	boom := errors.New("boom")
	err := db.Update(context.Background(), func(tx app.Tx) error {
		if err := tx.PutUser(app.User{ID: "u1", Username: "a"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	view(t, db, func(tx app.Tx) error {
		_, err := tx.GetUserByName("a")
		wantNotFound(t, err)
		return nil
	})
	// Writes in a View are refused.
	if err := db.View(context.Background(), func(tx app.Tx) error { return tx.PutEgress(app.EgressIP{ID: "e"}) }); err == nil {
		t.Fatal("write in View succeeded")
	}
}

func TestConcurrentUpdates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- db.Update(context.Background(), func(tx app.Tx) error {
				id := fmt.Sprintf("u%02d", i)
				if err := tx.PutUser(app.User{ID: id, Username: "name-" + id}); err != nil {
					return err
				}
				return tx.AddEvent(&app.Event{Time: at(i), Action: "user.create", UserID: id})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	view(t, db, func(tx app.Tx) error {
		users := must[[]app.User](t)(tx.ListUsers())
		if len(users) != n {
			t.Fatalf("%d users after reopen, want %d", len(users), n)
		}
		for i := range n {
			id := fmt.Sprintf("u%02d", i)
			if u := must[app.User](t)(tx.GetUserByName("name-" + id)); u.ID != id {
				t.Fatalf("got %v", u)
			}
		}
		if c := must[int](t)(tx.CountEventsSince(time.Time{})); c != n {
			t.Fatalf("%d events, want %d", c, n)
		}
		return nil
	})
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantVersion := func(db *DB, want int) {
		t.Helper()
		if v, err := db.SchemaVersion(); err != nil || v != want {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, want)
		}
	}
	wantVersion(db, 1)
	update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u1", Username: "a"}) })
	db.Close()

	// Reopening runs nothing and keeps the data.
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantVersion(db, 1)
	view(t, db, func(tx app.Tx) error { _, err := tx.GetUserByName("a"); return err })
	db.Close()

	// A failing migration leaves the file as it was.
	failing := append(migrations[:len(migrations):len(migrations)], migration{version: 2, name: "fails", up: func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("v2")); err != nil {
			return err
		}
		return errors.New("nope")
	}})
	if _, err := open(path, Options{}, failing); err == nil {
		t.Fatal("open with a failing migration succeeded")
	}

	// A pending migration runs once, in order, and is recorded.
	runs := 0
	v2 := append(migrations[:len(migrations):len(migrations)], migration{version: 2, name: "test", up: func(tx *bolt.Tx) error {
		runs++
		b, err := tx.CreateBucket([]byte("v2"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}})
	for range 2 {
		db, err = open(path, Options{}, v2)
		if err != nil {
			t.Fatal(err)
		}
		wantVersion(db, 2)
		if err := db.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket([]byte("v2")); b == nil || string(b.Get([]byte("k"))) != "v" {
				return errors.New("migration 2 not applied")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	if runs != 1 {
		t.Fatalf("migration ran %d times, want 1", runs)
	}

	// This program knows only version 1: the newer file is refused, clearly.
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("err = %v, want ErrSchemaTooNew", err)
	}
	t.Logf("newer schema: %v", err)
}

func TestBackup(t *testing.T) {
	db := openTemp(t)
	update(t, db, func(tx app.Tx) error {
		if err := tx.PutUser(app.User{ID: "u1", Username: "alice"}); err != nil {
			return err
		}
		return tx.AddEvent(&app.Event{Time: at(1), Action: "a", HostID: "h1"})
	})

	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup = %d, %v (buffer %d)", n, err, buf.Len())
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil { // replaced atomically
		t.Fatal(err)
	}
	n, err = BackupFile(db, path)
	if err != nil || n == 0 {
		t.Fatalf("BackupFile = %d, %v", n, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != n {
		t.Errorf("backup mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), n)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("backup left temporary files: %v", entries)
	}
	// Writes after the backup are not in it.
	update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u2", Username: "bob"}) })

	bdb, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	view(t, bdb, func(tx app.Tx) error {
		if u := must[app.User](t)(tx.GetUserByName("alice")); u.ID != "u1" {
			t.Fatalf("got %v", u)
		}
		_, err := tx.GetUserByName("bob")
		wantNotFound(t, err)
		if p := must[app.EventPage](t)(tx.QueryEvents(app.EventQuery{HostID: "h1"})); len(p.Events) != 1 {
			t.Fatalf("got %v", p)
		}
		return nil
	})

	if _, err := BackupFile(db, filepath.Join(dir, "missing", "x.db")); err == nil {
		t.Fatal("backup into a missing directory succeeded")
	}
}

// BenchmarkQueryEventsHostRange queries 50 events of one host within a time range among
// 1,000,000 events (1,000 hosts, one event per millisecond). Setup takes a while.
func BenchmarkQueryEventsHostRange(b *testing.B) {
	const (
		total = 1_000_000
		batch = 10_000
		hosts = 1000
	)
	db, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	evTime := func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }
	start := time.Now()
	for lo := 0; lo < total; lo += batch {
		if err := db.db.Update(func(btx *bolt.Tx) error {
			t := &tx{tx: btx}
			for i := lo; i < lo+batch; i++ {
				e := app.Event{
					Time:       evTime(i),
					Action:     fmt.Sprintf("host.action%d", i%10),
					Result:     app.ResultSuccess,
					ActorID:    fmt.Sprintf("user-%03d", i%100),
					UserID:     fmt.Sprintf("user-%03d", i%100),
					HostID:     fmt.Sprintf("host-%04d", i%hosts),
					TargetType: "host",
					TargetID:   fmt.Sprintf("host-%04d", i%hosts),
					SourceIP:   "203.0.113.7",
					Message:    "benchmark event",
				}
				if err := t.AddEvent(&e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	fi, _ := os.Stat(db.Path())
	b.Logf("built %d events in %v (%d MiB)", total, time.Since(start).Round(time.Millisecond), fi.Size()>>20)

	// Each host has an event every second; a 300 s window holds 300 of them: the query
	// returns the newest 50 and a cursor.
	runtime.GC() // the build's garbage is not the query's cost
	i := 0
	for b.Loop() {
		h := i % hosts
		mid := 100_000 + (i*7919)%(total-400_000)
		q := app.EventQuery{
			HostID: fmt.Sprintf("host-%04d", h),
			Since:  evTime(mid),
			Until:  evTime(mid + 300_000),
			Limit:  50,
		}
		var p app.EventPage
		if err := db.View(context.Background(), func(t app.Tx) error {
			var err error
			p, err = t.QueryEvents(q)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if len(p.Events) != 50 || p.NextCursor == "" {
			b.Fatalf("got %d events, cursor %q", len(p.Events), p.NextCursor)
		}
		i++
	}
}
