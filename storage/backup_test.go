package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// backupOf writes a backup of db (with a secret file beside it) and returns its bytes.
func backupOf(t *testing.T, db *DB) []byte {
	t.Helper()
	dir := filepath.Dir(db.Path())
	if err := os.WriteFile(filepath.Join(dir, "jwt_secret"), []byte("s3cret-s3cret-s3cret-s3cret-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	h, err := db.WriteBackup(context.Background(), &buf, BackupOptions{Program: "test", Files: []string{"jwt_secret", "absent_file"}})
	if err != nil {
		t.Fatal(err)
	}
	if h.SchemaVersion != LatestSchemaVersion() || len(h.Files) != 2 || h.Files[1] != "jwt_secret" {
		t.Fatalf("header %+v", h)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "b.ccpbak")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	db := openTemp(t)
	update(t, db, func(tx app.Tx) error {
		for i := range 50 {
			if err := tx.PutUser(app.User{ID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("user%d", i)}); err != nil {
				return err
			}
		}
		return tx.AddEvent(&app.Event{Time: at(1), Action: "a", HostID: "h1"})
	})
	b := backupOf(t, db)
	if !bytes.HasPrefix(b, []byte(backupMagic)) {
		t.Fatalf("no magic: %q", b[:40])
	}
	h, err := ReadBackupHeader(bufio.NewReader(bytes.NewReader(b)))
	if err != nil || h.Program != "test" || h.DBSize == 0 {
		t.Fatalf("header %+v, %v", h, err)
	}
	path := writeFile(t, b)
	if _, err := VerifyBackupFile(path, t.TempDir()); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// Into a data dir that has an older database and a different secret: both kept aside.
	dataDir := t.TempDir()
	old, err := Open(filepath.Join(dataDir, DBFileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	update(t, old, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "old", Username: "olduser"}) })
	old.Close()
	if err := os.WriteFile(filepath.Join(dataDir, "jwt_secret"), []byte("another-secret-another-secret-xx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Restore(path, dataDir, RestoreOptions{})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(res.Restored) != 2 || len(res.KeptAs) != 2 {
		t.Errorf("restored %v, kept %v", res.Restored, res.KeptAs)
	}
	for _, aside := range res.KeptAs {
		if _, err := os.Stat(aside); err != nil {
			t.Errorf("kept-aside file: %v", err)
		}
	}
	entries, _ := os.ReadDir(dataDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".restore-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	if s, _ := os.ReadFile(filepath.Join(dataDir, "jwt_secret")); !strings.HasPrefix(string(s), "s3cret") {
		t.Errorf("secret not restored: %q", s)
	}
	rdb, err := Open(filepath.Join(dataDir, DBFileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if fi, _ := os.Stat(rdb.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("restored db mode %v", fi.Mode().Perm())
	}
	view(t, rdb, func(tx app.Tx) error {
		us, err := tx.ListUsers()
		if err != nil || len(us) != 50 {
			t.Fatalf("users %d, %v", len(us), err)
		}
		_, err = tx.GetUserByName("olduser")
		wantNotFound(t, err)
		if u := must[app.User](t)(tx.GetUserByName("user7")); u.ID != "u7" {
			t.Errorf("user7 = %+v", u)
		}
		return nil
	})
}

func TestRestoreRefusesCorruptNewerAndRunning(t *testing.T) {
	db := openTemp(t)
	update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u1", Username: "alice"}) })
	good := backupOf(t, db)
	h, _ := ReadBackupHeader(bufio.NewReader(bytes.NewReader(good)))
	hdrEnd := bytes.IndexByte(good[len(backupMagic):], '\n') + len(backupMagic) + 1

	flipped := bytes.Clone(good)
	flipped[hdrEnd+len(flipped[hdrEnd:])/2] ^= 0x55
	truncated := good[:hdrEnd+(len(good)-hdrEnd)/2]
	badSum := bytes.Replace(bytes.Clone(good), []byte(h.SHA256), []byte(strings.Repeat("0", 64)), 1)
	newer := bytes.Replace(bytes.Clone(good), []byte(fmt.Sprintf(`"schema_version":%d`, h.SchemaVersion)),
		[]byte(fmt.Sprintf(`"schema_version":%d`, LatestSchemaVersion()+1)), 1)

	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"flipped byte", flipped, ErrBackupCorrupt},
		{"truncated", truncated, ErrBackupCorrupt},
		{"checksum mismatch", badSum, ErrBackupCorrupt},
		{"not a backup", []byte("hello\n"), ErrNotBackup},
		{"newer schema in header", newer, ErrSchemaTooNew},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, c.b)
			if _, err := VerifyBackupFile(path, t.TempDir()); !errors.Is(err, c.want) {
				t.Errorf("verify: %v, want %v", err, c.want)
			}
			dataDir := t.TempDir()
			if _, err := Restore(path, dataDir, RestoreOptions{}); !errors.Is(err, c.want) {
				t.Errorf("restore: %v, want %v", err, c.want)
			}
			if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
				t.Errorf("a refused restore left %v", entries)
			}
		})
	}

	t.Run("database of a newer schema", func(t *testing.T) {
		// Written by a "future" program that has one more migration.
		future := append(append([]migration(nil), migrations...), migration{version: LatestSchemaVersion() + 1, name: "future",
			up: func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("future")); return err }})
		fdb, err := open(filepath.Join(t.TempDir(), "f.db"), Options{}, future)
		if err != nil {
			t.Fatal(err)
		}
		defer fdb.Close()
		var buf bytes.Buffer
		if _, err := fdb.WriteBackup(context.Background(), &buf, BackupOptions{}); err != nil {
			t.Fatal(err)
		}
		path := writeFile(t, buf.Bytes())
		_, err = Restore(path, t.TempDir(), RestoreOptions{})
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("restore: %v, want ErrSchemaTooNew", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("running server", func(t *testing.T) {
		dataDir := t.TempDir()
		live, err := Open(filepath.Join(dataDir, DBFileName), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		_, err = Restore(writeFile(t, good), dataDir, RestoreOptions{})
		if !errors.Is(err, ErrServerRunning) {
			t.Fatalf("restore under a running server: %v", err)
		}
		if _, err := BackupPath(context.Background(), live.Path(), &bytes.Buffer{}, BackupOptions{}); !errors.Is(err, ErrServerRunning) {
			t.Fatalf("offline backup under a running server: %v", err)
		}
	})
}

// TestBackupUnderWriteLoad: 200 concurrent writers while a backup runs. Every write
// acknowledged before the backup began is in it, each one whole (record and index), and
// the backup is a state between the two ends.
func TestBackupUnderWriteLoad(t *testing.T) {
	// Small batches, so the writers commit many times while the backup runs.
	db, err := Open(filepath.Join(t.TempDir(), "load.db"), Options{MaxBatchSize: 4, MaxBatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	put := func(i int) error {
		return db.Update(ctx, func(tx app.Tx) error {
			if err := tx.PutUser(app.User{ID: fmt.Sprintf("u%03d", i), Username: fmt.Sprintf("user%03d", i)}); err != nil {
				return err
			}
			return tx.AddEvent(&app.Event{Time: at(i), Action: "user.create", TargetID: fmt.Sprintf("u%03d", i)})
		})
	}
	for i := range 50 { // acknowledged before
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 50; i < 250; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := put(i); err != nil {
				t.Error(err)
			}
		}()
	}
	var buf bytes.Buffer
	gen := db.Generation()
	close(start)
	for db.Generation() < gen+40 { // well into the load
		runtime.Gosched()
	}
	if _, err := db.WriteBackup(ctx, &buf, BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	dataDir := t.TempDir()
	if _, err := Restore(writeFile(t, buf.Bytes()), dataDir, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	rdb, err := Open(filepath.Join(dataDir, DBFileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	view(t, rdb, func(tx app.Tx) error {
		us := must[[]app.User](t)(tx.ListUsers())
		if len(us) < 50 || len(us) > 250 {
			t.Fatalf("%d users", len(us))
		}
		for i := range 50 {
			if _, err := tx.GetUserByName(fmt.Sprintf("user%03d", i)); err != nil {
				t.Errorf("acknowledged user%03d missing: %v", i, err)
			}
		}
		for _, u := range us { // whole: index and the event of the same transaction
			if got, err := tx.GetUserByName(u.Username); err != nil || got.ID != u.ID {
				t.Errorf("%s: index %v, %v", u.ID, got, err)
			}
		}
		page := must[app.EventPage](t)(tx.QueryEvents(app.EventQuery{Type: "user.create", Limit: 500}))
		if len(page.Events) != len(us) {
			t.Errorf("%d users but %d user.create events", len(us), len(page.Events))
		}
		t.Logf("backup taken under load holds %d of 250 users", len(us))
		return nil
	})
}
