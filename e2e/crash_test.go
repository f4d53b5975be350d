package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

const (
	crashCreates = 2000 // users the test tries to create
	crashWorkers = 64   // concurrent requests
	crashAfter   = 600  // acknowledged creates before SIGKILL
)

// TestCrashLosesNoAcknowledgedWrite SIGKILLs the server in the middle of a burst of
// concurrent user creations. Every create that was answered 201 must survive the restart
// (the answer is only sent after the commit's fsync); creates that got no answer may or may
// not be there. The restarted server must open the database, and after a clean stop the file
// must pass bbolt's consistency check with every bucket readable.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	began := time.Now()
	binary(t)
	t.Logf("binary built in %s", time.Since(began).Round(time.Millisecond))
	dir := t.TempDir()
	env := map[string]string{
		"DATA_DIR":              dir,
		"RATE_LIMIT_PER_MINUTE": "0",
		"BCRYPT_COST":           "4",
		"ADMIN_PASSWORD":        "crash-test-admin-pw",
		"LOG_LEVEL":             "warn",
		// No container engine: this test is about the database, and a shared engine's
		// containers would only add reconciler events to it.
		"DOCKER_HOST": "unix://" + filepath.Join(dir, "no-engine.sock"),
	}
	p1 := start(t, env)
	jwt := p1.login("admin", "crash-test-admin-pw")
	t.Logf("first server ready and logged in")

	client := &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: crashWorkers, MaxConnsPerHost: crashWorkers},
	}
	defer client.CloseIdleConnections()

	var (
		mu         sync.Mutex
		acked      []string     // answered 201 with the user
		unanswered []string     // sent; no answer (transport error)
		unexpected []string     // any other answer: a bug
		ackCount   atomic.Int64 // len(acked), read by the workers
		killed     = make(chan struct{})
		killOnce   sync.Once
		killedAt   atomic.Int64 // ackCount when SIGKILL was sent
	)
	kill := func() {
		killOnce.Do(func() {
			killedAt.Store(ackCount.Load())
			if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("SIGKILL: %v", err)
			}
			close(killed)
		})
	}

	jobs := make(chan string)
	var wg sync.WaitGroup
	burst := time.Now()
	for w := 0; w < crashWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range jobs {
				var u app.UserView
				code, err := p1.do(client, "POST", "/v1/admin/users", jwt,
					map[string]string{"username": name, "password": "password-" + name}, &u)
				mu.Lock()
				switch {
				case err != nil:
					unanswered = append(unanswered, name)
				case code == http.StatusCreated && u.Username == name && u.ID != "":
					acked = append(acked, name)
					ackCount.Add(1)
				default:
					unexpected = append(unexpected, fmt.Sprintf("%s: %d %+v", name, code, u))
				}
				mu.Unlock()
				if ackCount.Load() >= crashAfter {
					kill()
				}
			}
		}()
	}
	sent := 0
feed:
	for i := 0; i < crashCreates; i++ {
		select {
		case jobs <- fmt.Sprintf("crash-%04d", i):
			sent++
		case <-killed:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	burstTook := time.Since(burst)

	select {
	case <-killed:
	default:
		t.Fatalf("the burst ended (%d sent, %d acknowledged) before %d acknowledgements: nothing was killed",
			sent, len(acked), crashAfter)
	}
	select {
	case <-p1.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not die within 10s of SIGKILL")
	}
	var exitErr *exec.ExitError
	if !errors.As(p1.err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the first server ended with %v, want death by SIGKILL", p1.err)
	}
	t.Logf("burst: %d sent, %d acknowledged (SIGKILL at %d), %d unanswered, in %s",
		sent, len(acked), killedAt.Load(), len(unanswered), burstTook.Round(time.Millisecond))
	if len(unexpected) > 0 {
		t.Errorf("%d creates got an answer other than 201 before the crash, e.g. %s", len(unexpected), unexpected[0])
	}
	if len(acked) < crashAfter {
		t.Fatalf("only %d acknowledged creates", len(acked))
	}

	// Restart on the same data dir: the database must open and hold every acknowledged user.
	restart := time.Now()
	p2 := start(t, env)
	t.Logf("restarted after the crash in %s", time.Since(restart).Round(time.Millisecond))
	jwt2 := p2.login("admin", "crash-test-admin-pw")
	var list struct {
		Users []app.UserView `json:"users"`
	}
	if code, err := p2.do(client, "GET", "/v1/admin/users", jwt2, nil, &list); err != nil || code != 200 {
		t.Fatalf("GET /v1/admin/users after the restart: %d %v", code, err)
	}
	present := map[string]int{}
	for _, u := range list.Users {
		present[u.Username]++
	}
	var lost []string
	for _, name := range acked {
		if present[name] != 1 {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Errorf("%d acknowledged users missing after the crash, e.g. %v", len(lost), lost[:min(len(lost), 10)])
	}
	known := map[string]bool{"admin": true}
	for i := 0; i < sent; i++ {
		known[fmt.Sprintf("crash-%04d", i)] = true
	}
	for name, n := range present {
		if !known[name] || n != 1 {
			t.Errorf("user %q listed %d times; it was never sent or is duplicated", name, n)
		}
	}
	kept := 0
	for _, name := range unanswered {
		if present[name] == 1 {
			kept++
		}
	}
	t.Logf("after restart: %d users listed; %d/%d acknowledged present; %d/%d unanswered present",
		len(list.Users), len(acked)-len(lost), len(acked), kept, len(unanswered))

	p2.terminate(20 * time.Second)

	// Offline: storage.Open succeeds at once (lock released, schema current) and a View
	// reads every kind of record.
	path := filepath.Join(dir, "cloud-cli-proxy.db")
	db, err := storage.Open(path, storage.Options{Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("storage.Open after the clean stop: %v", err)
	}
	var users, events int
	err = db.View(context.Background(), func(tx app.Tx) error {
		us, err := tx.ListUsers()
		if err != nil {
			return fmt.Errorf("users: %w", err)
		}
		users = len(us)
		for _, u := range us {
			if _, err := tx.GetUserByName(u.Username); err != nil {
				return fmt.Errorf("users_by_name %s: %w", u.Username, err)
			}
			if _, err := tx.ListSSHKeys(u.ID); err != nil {
				return fmt.Errorf("ssh keys of %s: %w", u.Username, err)
			}
			if _, err := tx.ListHostsByUser(u.ID); err != nil {
				return fmt.Errorf("hosts of %s: %w", u.Username, err)
			}
		}
		if _, err := tx.ListEgress(); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
		if _, err := tx.ListHosts(); err != nil {
			return fmt.Errorf("hosts: %w", err)
		}
		if _, err := tx.ListBindings(); err != nil {
			return fmt.Errorf("bindings: %w", err)
		}
		if _, err := tx.ListTasks("", 0); err != nil {
			return fmt.Errorf("tasks: %w", err)
		}
		if _, err := tx.ListTasksByState(app.TaskQueued, app.TaskRunning, app.TaskSucceeded, app.TaskFailed); err != nil {
			return fmt.Errorf("tasks by state: %w", err)
		}
		if _, err := tx.ListTokens(""); err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
		q := app.EventQuery{Limit: 500}
		for {
			page, err := tx.QueryEvents(q)
			if err != nil {
				return fmt.Errorf("events: %w", err)
			}
			events += len(page.Events)
			if page.NextCursor == "" {
				return nil
			}
			q.Cursor = page.NextCursor
		}
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("reading the database offline: %v", err)
	}
	if users != len(list.Users) {
		t.Errorf("offline: %d users, the API listed %d", users, len(list.Users))
	}
	if events < len(acked) {
		t.Errorf("offline: %d events, fewer than the %d acknowledged creates (each records one)", events, len(acked))
	}

	// And bbolt's own view: the page structure is consistent and every key of every bucket
	// (nested ones included) reads back.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("bbolt open: %v", err)
	}
	defer bdb.Close()
	buckets, keys := 0, 0
	err = bdb.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", cerr)
		}
		var walk func(b *bolt.Bucket) error
		walk = func(b *bolt.Bucket) error {
			buckets++
			return b.ForEach(func(k, v []byte) error {
				keys++
				if v == nil {
					if nb := b.Bucket(k); nb != nil {
						return walk(nb)
					}
				}
				return nil
			})
		}
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("offline: %d users, %d events; bbolt check clean, %d buckets, %d keys; whole test %s",
		users, events, buckets, keys, time.Since(began).Round(time.Millisecond))
}
