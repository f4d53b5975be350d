package storage

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Upgrades: testdata/v1.db was written by the program of schema version 1 (the main branch
// when online backup arrived) with the records of fixtureRecords. Every later program must
// open it (migrating it) and read those records back, through every index. Never regenerate
// a committed fixture: add testdata/v<N>.db for a new schema version instead, with
//
//	STORAGE_WRITE_FIXTURE=1 go test ./storage -run TestWriteFixture
//
// which writes testdata/v<LatestSchemaVersion>.db when it does not exist yet.

var fixtureT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ft(min int) time.Time   { return fixtureT0.Add(time.Duration(min) * time.Minute) }
func ftp(min int) *time.Time { t := ft(min); return &t }

type fixture struct {
	users    []app.User
	keys     []app.SSHKey
	egress   []app.EgressIP
	hosts    []app.Host
	bindings []app.Binding
	tokens   []app.AccessToken
	tasks    []app.Task
	events   []app.Event
	revoked  string
}

func fixtureRecords() fixture {
	return fixture{
		users: []app.User{
			{ID: "u-admin", Username: "admin", Role: "admin", Status: "active", CreatedAt: ft(0), UpdatedAt: ft(0),
				PasswordHash: "$2a$04$abcdefghijklmnopqrstuu1Yb0rYzvNQZJXlyI3UhlkJK8p9Yp9AO"},
			{ID: "u-alice", Username: "alice", Role: "user", Status: "active", ExpiresAt: ftp(60 * 24 * 365), CreatedAt: ft(1), UpdatedAt: ft(5),
				PasswordHash: "$2a$04$zyxwvutsrqponmlkjihgfeOsDd9xw4N4d3Y7yWnWmcqzvTbJd1e5e", Version: 3},
			{ID: "u-viewer", Username: "vera", Role: "viewer", Status: "disabled", CreatedAt: ft(2), UpdatedAt: ft(3), Version: 1},
		},
		keys: []app.SSHKey{{ID: "k-1", UserID: "u-alice", Name: "laptop",
			PublicKey:   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl laptop",
			Fingerprint: "SHA256:qMsBs1hP2VBv0lNJ5JNoC1ypC1ma0Vc1Q/iVx8r3Vgk", Type: "ssh-ed25519", Source: "self", CreatedAt: ft(6)}},
		egress: []app.EgressIP{
			{ID: "e-wg", Label: "wg-fra", IPAddress: "203.0.113.7", TunnelType: "wireguard", Provider: "acme",
				WGEndpoint: "198.51.100.1:51820", WGPublicKey: "pub=", WGPrivateKey: "priv=", WGPresharedKey: "psk=",
				WGAllowedIPs: "0.0.0.0/0, ::/0", WGDNSServer: "10.0.0.1", WGPeerAddress: "10.0.0.2/32", CreatedAt: ft(7), UpdatedAt: ft(8)},
			{ID: "e-proxy", Label: "socks-ams", IPAddress: "203.0.113.8", TunnelType: "proxy",
				ProxyConfig: json.RawMessage(`{"type":"socks","server":"proxy.example.com","server_port":1080,"username":"u","password":"p"}`),
				CreatedAt:   ft(9), UpdatedAt: ft(9)},
		},
		hosts: []app.Host{{ID: "h-1", ShortID: "k3x9q2ab", UserID: "u-alice", Image: "cloud-cli-proxy/managed:latest",
			CPU: 1.5, MemoryMB: 2048, PIDs: 512, Status: "running", DesiredState: "running", ContainerID: "c0ffee",
			SSHPasswordHash: "$2a$04$hosthosthosthosthosthoeJ2S3oIu3YbQAVnXxN6W8K1hPqD0lUO",
			EgressCheck: &app.HostEgressCheck{OK: true, EgressIPID: "e-wg", Trigger: "start", CheckedAt: ft(12), DurationMS: 840,
				Checks: []app.EgressCheck{{Name: "connectivity", OK: true, DurationMS: 120}, {Name: "dns_leak", Reason: "resolver outside the tunnel", DurationMS: 300}}},
			CreatedAt: ft(10), UpdatedAt: ft(12)}},
		bindings: []app.Binding{{ID: "b-1", HostID: "h-1", EgressIPID: "e-wg", CreatedAt: ft(11)}},
		tokens: []app.AccessToken{{ID: "t-1", UserID: "u-alice", Name: "ci-deploy", Hash: "6f1ed002ab5595859014ebf0951522d9",
			Hint: "ccp_…a1b2", Write: true, Active: true, ExpiresAt: ftp(60 * 24 * 30), CreatedAt: ft(13), UpdatedAt: ft(13),
			LastUsedAt: ftp(14), LastUsedIP: "192.0.2.10"}},
		tasks: []app.Task{
			{ID: "task-1", Kind: "host.create", State: "succeeded", HostID: "h-1", UserID: "u-alice", ActorID: "u-admin",
				Steps:     []app.TaskStep{{Name: "create container", State: "done", At: ft(10), End: ftp(11)}, {Name: "start", State: "done", At: ft(11), End: ftp(12)}},
				CreatedAt: ft(10), StartedAt: ftp(10), FinishedAt: ftp(12)},
			{ID: "task-2", Kind: "host.stop", State: "failed", HostID: "h-1", ActorID: "u-admin", Options: map[string]string{"keep_home": "true"},
				Steps: []app.TaskStep{{Name: "stop", State: "failed", At: ft(20)}}, Error: &app.TaskError{Code: "runtime_unavailable", Message: "engine down"},
				CreatedAt: ft(20), StartedAt: ftp(20), FinishedAt: ftp(21)},
		},
		events: []app.Event{
			{Time: ft(1), Action: "user.create", Result: "success", ActorID: "u-admin", ActorName: "admin", AuthMethod: "jwt", TargetType: "user", TargetID: "u-alice", UserID: "u-alice"},
			{Time: ft(10), Action: "host.create", Result: "success", ActorID: "u-admin", ActorName: "admin", AuthMethod: "token", TokenID: "t-0", TokenName: "ops",
				SourceIP: "192.0.2.1", TargetType: "host", TargetID: "h-1", UserID: "u-alice", HostID: "h-1", Message: "k3x9q2ab"},
			{Time: ft(14), Action: "token.use", Result: "success", ActorID: "u-alice", ActorName: "alice", AuthMethod: "token", TokenID: "t-1", Count: 7, Message: "GET /v1/user/hosts"},
		},
		revoked: "jti-revoked",
	}
}

// TestWriteFixture writes testdata/v<LatestSchemaVersion>.db (only with
// STORAGE_WRITE_FIXTURE=1, and never over an existing one).
func TestWriteFixture(t *testing.T) {
	if os.Getenv("STORAGE_WRITE_FIXTURE") != "1" {
		t.Skip("set STORAGE_WRITE_FIXTURE=1 to write the fixture of this schema version")
	}
	path := filepath.Join("testdata", fmt.Sprintf("v%d.db", LatestSchemaVersion()))
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s exists; fixtures of released schema versions are never rewritten", path)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := fixtureRecords()
	update(t, db, func(tx app.Tx) error {
		for _, u := range f.users {
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		for _, k := range f.keys {
			if err := tx.PutSSHKey(k); err != nil {
				return err
			}
		}
		for _, e := range f.egress {
			if err := tx.PutEgress(e); err != nil {
				return err
			}
		}
		for _, h := range f.hosts {
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		for _, b := range f.bindings {
			if err := tx.PutBinding(b); err != nil {
				return err
			}
		}
		for _, tk := range f.tokens {
			if err := tx.PutToken(tk); err != nil {
				return err
			}
		}
		for _, ts := range f.tasks {
			if err := tx.PutTask(ts); err != nil {
				return err
			}
		}
		for i := range f.events {
			if err := tx.AddEvent(&f.events[i]); err != nil {
				return err
			}
		}
		return tx.RevokeJWT(f.revoked, ft(60*24*365*10))
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// sameJSON compares records by their JSON form (times compare by instant, nil and empty
// stay apart).
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// TestFixturesOpen: every committed fixture opens with this program (migrated to its schema)
// and every record reads back whole through its indexes.
func TestFixturesOpen(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "v*.db"))
	if len(paths) == 0 {
		t.Fatal("no fixture in testdata")
	}
	for _, src := range paths {
		t.Run(filepath.Base(src), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fixture.db") // Open migrates: never the committed file
			copyFile(t, src, path)
			db, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("open %s: %v", src, err)
			}
			defer db.Close()
			if v, err := db.SchemaVersion(); err != nil || v != LatestSchemaVersion() {
				t.Errorf("schema version after open %d, %v; want %d", v, err, LatestSchemaVersion())
			}
			f := fixtureRecords()
			view(t, db, func(tx app.Tx) error {
				for _, u := range f.users {
					sameJSON(t, "user "+u.ID, must[app.User](t)(tx.GetUser(u.ID)), u)
					sameJSON(t, "user by name "+u.Username, must[app.User](t)(tx.GetUserByName(u.Username)), u)
				}
				sameJSON(t, "users", must[[]app.User](t)(tx.ListUsers()), f.users)
				sameJSON(t, "ssh key", must[app.SSHKey](t)(tx.GetSSHKey("k-1")), f.keys[0])
				sameJSON(t, "alice's keys", must[[]app.SSHKey](t)(tx.ListSSHKeys("u-alice")), f.keys)
				for _, e := range f.egress {
					sameJSON(t, "egress "+e.ID, must[app.EgressIP](t)(tx.GetEgress(e.ID)), e)
				}
				sameJSON(t, "host", must[app.Host](t)(tx.GetHost("h-1")), f.hosts[0])
				sameJSON(t, "host by short id", must[app.Host](t)(tx.GetHostByShortID("k3x9q2ab")), f.hosts[0])
				sameJSON(t, "alice's hosts", must[[]app.Host](t)(tx.ListHostsByUser("u-alice")), f.hosts)
				sameJSON(t, "binding by host", must[app.Binding](t)(tx.GetBindingByHost("h-1")), f.bindings[0])
				sameJSON(t, "bindings by egress", must[[]app.Binding](t)(tx.ListBindingsByEgress("e-wg")), f.bindings)
				tk := f.tokens[0]
				sameJSON(t, "token", must[app.AccessToken](t)(tx.GetToken(tk.ID)), tk)
				sameJSON(t, "token by hash", must[app.AccessToken](t)(tx.GetTokenByHash(tk.Hash)), tk)
				sameJSON(t, "token by name", must[app.AccessToken](t)(tx.GetTokenByName(tk.UserID, tk.Name)), tk)
				for _, ts := range f.tasks {
					sameJSON(t, "task "+ts.ID, must[app.Task](t)(tx.GetTask(ts.ID)), ts)
				}
				if got := must[[]app.Task](t)(tx.ListTasks("h-1", 0)); len(got) != 2 || got[0].ID != "task-2" {
					t.Errorf("tasks of h-1: %+v", got)
				}
				if got := must[[]app.Task](t)(tx.ListTasksByState("failed")); len(got) != 1 || got[0].ID != "task-2" {
					t.Errorf("failed tasks: %+v", got)
				}
				all := must[app.EventPage](t)(tx.QueryEvents(app.EventQuery{Limit: 10}))
				if len(all.Events) != len(f.events) {
					t.Fatalf("%d events, want %d", len(all.Events), len(f.events))
				}
				for i, e := range all.Events { // newest first
					want := f.events[len(f.events)-1-i]
					want.ID = e.ID
					sameJSON(t, "event "+want.Action, e, want)
				}
				for q, n := range map[app.EventQuery]int{{HostID: "h-1", Limit: 10}: 1, {UserID: "u-alice", Limit: 10}: 2, {Type: "token.use", Limit: 10}: 1} {
					if got := must[app.EventPage](t)(tx.QueryEvents(q)); len(got.Events) != n {
						t.Errorf("events %+v: %d, want %d", q, len(got.Events), n)
					}
				}
				if ok, err := tx.IsJWTRevoked(f.revoked); err != nil || !ok {
					t.Errorf("revocation lost: %v %v", ok, err)
				}
				return nil
			})
			// And the upgraded database takes new writes.
			update(t, db, func(tx app.Tx) error {
				return tx.PutUser(app.User{ID: "u-new", Username: "newcomer", CreatedAt: ft(100)})
			})
		})
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
