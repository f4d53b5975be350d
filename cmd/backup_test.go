package cmd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// runCmd runs the command line with env as the whole environment.
func runCmd(env map[string]string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cmd.Main(context.Background(), args, envOf(env), &out, &errb)
	return code, out.String(), errb.String()
}

// quietEnv is a server on loopback ports without the SSH gateway, with cheap bcrypt.
func quietEnv(dir string) map[string]string {
	return map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "off", "HTTP_ADDR": "127.0.0.1:0",
		"BCRYPT_COST": "4", "ADMIN_PASSWORD": "admin-password", "RATE_LIMIT_PER_MINUTE": "0"}
}

// TestBackupWhileServing: `backup` reaches the running server through its admin socket (0600)
// while 200 users are created concurrently through the API. Restored into a fresh data dir,
// the backup holds every user acknowledged before the backup began, each whole, the data dir's
// secrets, and opens; `restore` refuses the running server's data dir.
func TestBackupWhileServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServe(t, quietEnv(dir))
	sock := filepath.Join(dir, cmd.AdminSocketName)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v", fi, err)
	}
	jwt, code := s.login("admin", "admin-password")
	if code != 200 {
		t.Fatalf("login %d", code)
	}

	const n = 200
	var (
		mu         sync.Mutex
		ackedAt    = map[string]time.Time{}
		wg         sync.WaitGroup
		start      = make(chan struct{})
		backupAt   time.Time
		backupDone = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			name := fmt.Sprintf("load-%03d", i)
			if c := s.call("POST", "/v1/admin/users", jwt, map[string]any{"username": name, "password": "password-" + name}, nil); c != 201 {
				t.Errorf("create %s: %d", name, c)
				return
			}
			mu.Lock()
			ackedAt[name] = time.Now()
			mu.Unlock()
		}()
	}
	out := filepath.Join(t.TempDir(), "live.ccpbak")
	close(start)
	go func() {
		defer close(backupDone)
		for { // start the backup once the load is well under way
			mu.Lock()
			k := len(ackedAt)
			mu.Unlock()
			if k >= n/4 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		backupAt = time.Now()
		code, stdout, stderr := runCmd(nil, "backup", "--out", out, "--data-dir", dir)
		if code != 0 || !strings.Contains(stdout, "running server") {
			t.Errorf("backup while serving: exit %d\n%s%s", code, stdout, stderr)
		}
	}()
	wg.Wait()
	<-backupDone
	if t.Failed() {
		t.FailNow()
	}
	if m := fileMode(t, out); m != 0o600 {
		t.Errorf("backup file mode %o", m)
	}
	if code, stdout, stderr := runCmd(nil, "verify", "--from", out); code != 0 || !strings.Contains(stdout, "OK") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runCmd(nil, "restore", "--from", out, "--data-dir", dir); code != 1 || !strings.Contains(stderr, "running") {
		t.Errorf("restore into the running server's data dir: exit %d, %s", code, stderr)
	}

	fresh := filepath.Join(t.TempDir(), "restored")
	if code, stdout, stderr := runCmd(nil, "restore", "--from", out, "--data-dir", fresh); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, name := range []string{"jwt_secret", "token_hash_key"} {
		if readFile(t, filepath.Join(fresh, name)) != readFile(t, filepath.Join(dir, name)) {
			t.Errorf("%s not restored", name)
		}
	}
	db, err := storage.Open(filepath.Join(fresh, storage.DBFileName), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	present := 0
	err = db.View(context.Background(), func(tx app.Tx) error {
		for name, at := range ackedAt {
			u, err := tx.GetUserByName(name)
			if err == nil {
				present++
				if _, err := tx.GetUser(u.ID); err != nil {
					t.Errorf("%s: index without record: %v", name, err)
				}
			} else if at.Before(backupAt) {
				t.Errorf("%s was acknowledged before the backup began but is not in it: %v", name, err)
			}
		}
		// Each user was written with its audit event in one transaction: both or neither.
		users, err := tx.ListUsers()
		if err != nil {
			return err
		}
		page, err := tx.QueryEvents(app.EventQuery{Type: "user.create", Limit: 500})
		if err == nil && len(page.Events) != len(users) {
			t.Errorf("%d users but %d user.create events", len(users), len(page.Events))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the backup holds %d of %d users created during it", present, n)

	var events struct {
		Events []struct {
			ActorName string `json:"actor_name"`
			Result    string `json:"result"`
		} `json:"events"`
	}
	s.call("GET", "/v1/admin/events?type=backup.create", jwt, nil, &events)
	if len(events.Events) != 1 || !strings.HasPrefix(events.Events[0].ActorName, "local-socket") || events.Events[0].Result != "success" {
		t.Errorf("backup.create events: %+v", events.Events)
	}
}

// TestBackupStoppedServer: with no server running, `backup` reads the database itself;
// `restore` keeps the previous database aside; a corrupt file is refused by verify and
// restore alike.
func TestBackupStoppedServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServe(t, quietEnv(dir))
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cmd.AdminSocketName)); !os.IsNotExist(err) {
		t.Errorf("admin socket left after stop: %v", err)
	}
	out := filepath.Join(t.TempDir(), "offline.ccpbak")
	code, stdout, stderr := runCmd(map[string]string{"DATA_DIR": dir}, "backup", "--out", out)
	if code != 0 || !strings.Contains(stdout, "stopped server") {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCmd(nil, "restore", "--from", out, "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "pre-restore-") {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	s2 := startServe(t, quietEnv(dir))
	if _, code := s2.login("admin", "admin-password"); code != 200 {
		t.Errorf("login after restore: %d", code)
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0xff // inside the gzip trailer: CRC-32 or size
	bad := filepath.Join(t.TempDir(), "bad.ccpbak")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(nil, "verify", "--from", bad); code != 1 || !strings.Contains(stderr, "corrupt") {
		t.Errorf("verify of a corrupt file: exit %d, %s", code, stderr)
	}
	fresh := t.TempDir()
	if code, _, stderr := runCmd(nil, "restore", "--from", bad, "--data-dir", fresh); code != 1 || !strings.Contains(stderr, "corrupt") {
		t.Errorf("restore of a corrupt file: exit %d, %s", code, stderr)
	}
	if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
		t.Errorf("a refused restore left %v", entries)
	}
}
