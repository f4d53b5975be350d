package storage

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func openTemp(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "test.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func update(t testing.TB, db *DB, fn func(app.Tx) error) {
	t.Helper()
	if err := db.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t testing.TB, db *DB, fn func(app.Tx) error) {
	t.Helper()
	if err := db.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func wantNotFound(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, app.ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	if e := app.AsError(err); e.Code != "not_found" {
		t.Fatalf("code = %q, want not_found", e.Code)
	}
}

func wantConflict(t testing.TB, err error, code app.ErrorCode) {
	t.Helper()
	if !errors.Is(err, app.ErrConflict) {
		t.Fatalf("err = %v, want conflict", err)
	}
	if e := app.AsError(err); e.Code != code {
		t.Fatalf("code = %q, want %q", e.Code, code)
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ids[T any](s []T, id func(T) string) []string {
	out := []string{}
	for _, v := range s {
		out = append(out, id(v))
	}
	return out
}

func userIDs(s []app.User) []string       { return ids(s, func(v app.User) string { return v.ID }) }
func keyIDs(s []app.SSHKey) []string      { return ids(s, func(v app.SSHKey) string { return v.ID }) }
func hostIDs(s []app.Host) []string       { return ids(s, func(v app.Host) string { return v.ID }) }
func bindingIDs(s []app.Binding) []string { return ids(s, func(v app.Binding) string { return v.ID }) }
func tokenIDs(s []app.AccessToken) []string {
	return ids(s, func(v app.AccessToken) string { return v.ID })
}
func taskIDs(s []app.Task) []string       { return ids(s, func(v app.Task) string { return v.ID }) }
func eventIDs(s []app.Event) []string     { return ids(s, func(v app.Event) string { return v.ID }) }
func egressIDs(s []app.EgressIP) []string { return ids(s, func(v app.EgressIP) string { return v.ID }) }
func eqIDs(t testing.TB, what string, got, want []string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// TestRoundTrip puts, reads back, lists, updates and deletes one record of each entity.
func TestRoundTrip(t *testing.T) {
	exp := at(3600)
	tests := []struct {
		name   string
		put    func(app.Tx) error
		get    func(app.Tx) (any, error)
		want   any
		modify func(app.Tx) error // changes the record
		want2  any
		list   func(app.Tx) ([]string, error)
		del    func(app.Tx) error
	}{
		{
			name: "user",
			put: func(tx app.Tx) error {
				return tx.PutUser(app.User{ID: "u1", Username: "alice", Role: app.RoleAdmin, Status: app.UserActive, ExpiresAt: &exp, CreatedAt: at(0), UpdatedAt: at(0), PasswordHash: "h", Version: 3})
			},
			get:  func(tx app.Tx) (any, error) { return tx.GetUser("u1") },
			want: app.User{ID: "u1", Username: "alice", Role: app.RoleAdmin, Status: app.UserActive, ExpiresAt: &exp, CreatedAt: at(0), UpdatedAt: at(0), PasswordHash: "h", Version: 3},
			modify: func(tx app.Tx) error {
				return tx.PutUser(app.User{ID: "u1", Username: "alice", Role: app.RoleViewer, Status: app.UserDisabled, CreatedAt: at(0), UpdatedAt: at(5), Version: 4})
			},
			want2: app.User{ID: "u1", Username: "alice", Role: app.RoleViewer, Status: app.UserDisabled, CreatedAt: at(0), UpdatedAt: at(5), Version: 4},
			list: func(tx app.Tx) ([]string, error) {
				l, err := tx.ListUsers()
				return userIDs(l), err
			},
			del: func(tx app.Tx) error { return tx.DeleteUser("u1") },
		},
		{
			name: "ssh key",
			put: func(tx app.Tx) error {
				return tx.PutSSHKey(app.SSHKey{ID: "k1", UserID: "u1", Name: "laptop", PublicKey: "ssh-ed25519 AAA", Fingerprint: "SHA256:x", Type: "ssh-ed25519", Source: "self", CreatedAt: at(0)})
			},
			get:  func(tx app.Tx) (any, error) { return tx.GetSSHKey("k1") },
			want: app.SSHKey{ID: "k1", UserID: "u1", Name: "laptop", PublicKey: "ssh-ed25519 AAA", Fingerprint: "SHA256:x", Type: "ssh-ed25519", Source: "self", CreatedAt: at(0)},
			modify: func(tx app.Tx) error {
				return tx.PutSSHKey(app.SSHKey{ID: "k1", UserID: "u1", Name: "desk", PublicKey: "ssh-ed25519 AAA", Fingerprint: "SHA256:x", CreatedAt: at(0)})
			},
			want2: app.SSHKey{ID: "k1", UserID: "u1", Name: "desk", PublicKey: "ssh-ed25519 AAA", Fingerprint: "SHA256:x", CreatedAt: at(0)},
			list: func(tx app.Tx) ([]string, error) {
				l, err := tx.ListSSHKeys("u1")
				return keyIDs(l), err
			},
			del: func(tx app.Tx) error { return tx.DeleteSSHKey("k1") },
		},
		{
			name: "egress",
			put: func(tx app.Tx) error {
				return tx.PutEgress(app.EgressIP{ID: "e1", Label: "fra", IPAddress: "192.0.2.1", TunnelType: app.TunnelProxy, ProxyConfig: []byte(`{"url":"socks5://x"}`), CreatedAt: at(0)})
			},
			get:  func(tx app.Tx) (any, error) { return tx.GetEgress("e1") },
			want: app.EgressIP{ID: "e1", Label: "fra", IPAddress: "192.0.2.1", TunnelType: app.TunnelProxy, ProxyConfig: []byte(`{"url":"socks5://x"}`), CreatedAt: at(0)},
			modify: func(tx app.Tx) error {
				return tx.PutEgress(app.EgressIP{ID: "e1", Label: "ams", IPAddress: "192.0.2.2", TunnelType: app.TunnelWireGuard, WGPrivateKey: "priv", CreatedAt: at(0)})
			},
			want2: app.EgressIP{ID: "e1", Label: "ams", IPAddress: "192.0.2.2", TunnelType: app.TunnelWireGuard, WGPrivateKey: "priv", CreatedAt: at(0)},
			list: func(tx app.Tx) ([]string, error) {
				l, err := tx.ListEgress()
				return egressIDs(l), err
			},
			del: func(tx app.Tx) error { return tx.DeleteEgress("e1") },
		},
		{
			name: "host",
			put: func(tx app.Tx) error {
				return tx.PutHost(app.Host{ID: "h1", ShortID: "abc", UserID: "u1", Image: "img", CPU: 1.5, MemoryMB: 512, PIDs: 100, Status: app.HostPending, DesiredState: "running", CreatedAt: at(0)})
			},
			get:  func(tx app.Tx) (any, error) { return tx.GetHostByShortID("abc") },
			want: app.Host{ID: "h1", ShortID: "abc", UserID: "u1", Image: "img", CPU: 1.5, MemoryMB: 512, PIDs: 100, Status: app.HostPending, DesiredState: "running", CreatedAt: at(0)},
			modify: func(tx app.Tx) error {
				return tx.PutHost(app.Host{ID: "h1", ShortID: "abc", UserID: "u1", Status: app.HostRunning, ContainerID: "c1", CreatedAt: at(0)})
			},
			want2: app.Host{ID: "h1", ShortID: "abc", UserID: "u1", Status: app.HostRunning, ContainerID: "c1", CreatedAt: at(0)},
			list: func(tx app.Tx) ([]string, error) {
				l, err := tx.ListHostsByUser("u1")
				return hostIDs(l), err
			},
			del: func(tx app.Tx) error { return tx.DeleteHost("h1") },
		},
		{
			name: "binding",
			put: func(tx app.Tx) error {
				return tx.PutBinding(app.Binding{ID: "b1", HostID: "h1", EgressIPID: "e1", CreatedAt: at(0)})
			},
			get:  func(tx app.Tx) (any, error) { return tx.GetBindingByHost("h1") },
			want: app.Binding{ID: "b1", HostID: "h1", EgressIPID: "e1", CreatedAt: at(0)},
			modify: func(tx app.Tx) error {
				return tx.PutBinding(app.Binding{ID: "b1", HostID: "h1", EgressIPID: "e1", CreatedAt: at(1)})
			},
			want2: app.Binding{ID: "b1", HostID: "h1", EgressIPID: "e1", CreatedAt: at(1)},
			list: func(tx app.Tx) ([]string, error) {
				l, err := tx.ListBindingsByEgress("e1")
				return bindingIDs(l), err
			},
			del: func(tx app.Tx) error { return tx.DeleteBinding("b1") },
		},
		{
			name: "token",
			put: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t1", UserID: "u1", Name: "ci", Hash: "hash1", Hint: "abcd", Write: true, Active: true, CreatedAt: at(0)})
			},
			get:  func(tx app.Tx) (any, error) { return tx.GetTokenByHash("hash1") },
			want: app.AccessToken{ID: "t1", UserID: "u1", Name: "ci", Hash: "hash1", Hint: "abcd", Write: true, Active: true, CreatedAt: at(0)},
			modify: func(tx app.Tx) error {
				lu := at(9)
				return tx.PutToken(app.AccessToken{ID: "t1", UserID: "u1", Name: "ci", Hash: "hash1", Hint: "abcd", CreatedAt: at(0), LastUsedAt: &lu, LastUsedIP: "198.51.100.1"})
			},
			want2: func() any {
				lu := at(9)
				return app.AccessToken{ID: "t1", UserID: "u1", Name: "ci", Hash: "hash1", Hint: "abcd", CreatedAt: at(0), LastUsedAt: &lu, LastUsedIP: "198.51.100.1"}
			}(),
			list: func(tx app.Tx) ([]string, error) {
				l, err := tx.ListTokens("u1")
				return tokenIDs(l), err
			},
			del: func(tx app.Tx) error { return tx.DeleteToken("t1") },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTemp(t)
			update(t, db, tc.put)
			check := func(want any) {
				t.Helper()
				view(t, db, func(tx app.Tx) error {
					got, err := tc.get(tx)
					if err != nil {
						t.Fatalf("get: %v", err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("got  %+v\nwant %+v", got, want)
					}
					l, err := tc.list(tx)
					if err != nil {
						t.Fatal(err)
					}
					eqIDs(t, "list", l, []string{reflect.ValueOf(want).FieldByName("ID").String()})
					return nil
				})
			}
			check(tc.want)
			update(t, db, tc.modify)
			check(tc.want2)
			update(t, db, tc.del)
			view(t, db, func(tx app.Tx) error {
				_, err := tc.get(tx)
				wantNotFound(t, err)
				l, err := tc.list(tx)
				if err != nil {
					t.Fatal(err)
				}
				eqIDs(t, "list after delete", l, nil)
				return nil
			})
			err := db.Update(context.Background(), tc.del)
			wantNotFound(t, err)
		})
	}
}

func TestNotFound(t *testing.T) {
	db := openTemp(t)
	get := func(f func(app.Tx) error) func(app.Tx) error { return f }
	tests := []struct {
		name string
		fn   func(app.Tx) error
	}{
		{"GetUser", get(func(tx app.Tx) error { _, err := tx.GetUser("x"); return err })},
		{"GetUser empty", get(func(tx app.Tx) error { _, err := tx.GetUser(""); return err })},
		{"GetUserByName", get(func(tx app.Tx) error { _, err := tx.GetUserByName("x"); return err })},
		{"GetSSHKey", get(func(tx app.Tx) error { _, err := tx.GetSSHKey("x"); return err })},
		{"GetEgress", get(func(tx app.Tx) error { _, err := tx.GetEgress("x"); return err })},
		{"GetHost", get(func(tx app.Tx) error { _, err := tx.GetHost("x"); return err })},
		{"GetHostByShortID", get(func(tx app.Tx) error { _, err := tx.GetHostByShortID("x"); return err })},
		{"GetBinding", get(func(tx app.Tx) error { _, err := tx.GetBinding("x"); return err })},
		{"GetBindingByHost", get(func(tx app.Tx) error { _, err := tx.GetBindingByHost("x"); return err })},
		{"GetTask", get(func(tx app.Tx) error { _, err := tx.GetTask("x"); return err })},
		{"GetToken", get(func(tx app.Tx) error { _, err := tx.GetToken("x"); return err })},
		{"GetTokenByHash", get(func(tx app.Tx) error { _, err := tx.GetTokenByHash("x"); return err })},
		{"GetTokenByName", get(func(tx app.Tx) error { _, err := tx.GetTokenByName("u", "x"); return err })},
		{"DeleteUser", func(tx app.Tx) error { return tx.DeleteUser("x") }},
		{"DeleteSSHKey", func(tx app.Tx) error { return tx.DeleteSSHKey("x") }},
		{"DeleteEgress", func(tx app.Tx) error { return tx.DeleteEgress("x") }},
		{"DeleteHost", func(tx app.Tx) error { return tx.DeleteHost("x") }},
		{"DeleteBinding", func(tx app.Tx) error { return tx.DeleteBinding("x") }},
		{"DeleteToken", func(tx app.Tx) error { return tx.DeleteToken("x") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantNotFound(t, db.Update(context.Background(), tc.fn))
		})
	}
}

func TestUniqueConflicts(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(app.Tx) error
		conflict func(app.Tx) error
		code     app.ErrorCode
		absent   func(app.Tx) error // the rejected record must not exist
		allowed  func(app.Tx) error // a near miss that must succeed
	}{
		{
			name:     "username",
			setup:    func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u1", Username: "alice"}) },
			conflict: func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u2", Username: "alice"}) },
			code:     "duplicate_username",
			absent:   func(tx app.Tx) error { _, err := tx.GetUser("u2"); return err },
			allowed:  func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u1", Username: "alice", Role: "x"}) },
		},
		{
			name: "ssh fingerprint per user",
			setup: func(tx app.Tx) error {
				return tx.PutSSHKey(app.SSHKey{ID: "k1", UserID: "u1", Fingerprint: "fp"})
			},
			conflict: func(tx app.Tx) error { return tx.PutSSHKey(app.SSHKey{ID: "k2", UserID: "u1", Fingerprint: "fp"}) },
			code:     "duplicate_key",
			absent:   func(tx app.Tx) error { _, err := tx.GetSSHKey("k2"); return err },
			allowed:  func(tx app.Tx) error { return tx.PutSSHKey(app.SSHKey{ID: "k3", UserID: "u2", Fingerprint: "fp"}) },
		},
		{
			name:     "host short id",
			setup:    func(tx app.Tx) error { return tx.PutHost(app.Host{ID: "h1", ShortID: "abc", UserID: "u1"}) },
			conflict: func(tx app.Tx) error { return tx.PutHost(app.Host{ID: "h2", ShortID: "abc", UserID: "u2"}) },
			code:     "duplicate_short_id",
			absent:   func(tx app.Tx) error { _, err := tx.GetHost("h2"); return err },
			allowed:  func(tx app.Tx) error { return tx.PutHost(app.Host{ID: "h2", ShortID: "abd", UserID: "u1"}) },
		},
		{
			name:     "binding per host",
			setup:    func(tx app.Tx) error { return tx.PutBinding(app.Binding{ID: "b1", HostID: "h1", EgressIPID: "e1"}) },
			conflict: func(tx app.Tx) error { return tx.PutBinding(app.Binding{ID: "b2", HostID: "h1", EgressIPID: "e2"}) },
			code:     "host_already_bound",
			absent:   func(tx app.Tx) error { _, err := tx.GetBinding("b2"); return err },
			allowed:  func(tx app.Tx) error { return tx.PutBinding(app.Binding{ID: "b2", HostID: "h2", EgressIPID: "e1"}) },
		},
		{
			name: "token hash",
			setup: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t1", UserID: "u1", Name: "a", Hash: "H"})
			},
			conflict: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t2", UserID: "u2", Name: "b", Hash: "H"})
			},
			code:   "duplicate_token_hash",
			absent: func(tx app.Tx) error { _, err := tx.GetToken("t2"); return err },
			allowed: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t2", UserID: "u2", Name: "b", Hash: "H2"})
			},
		},
		{
			name: "token name per user",
			setup: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t1", UserID: "u1", Name: "ci", Hash: "H1"})
			},
			conflict: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t2", UserID: "u1", Name: "ci", Hash: "H2"})
			},
			code: "duplicate_token_name",
			absent: func(tx app.Tx) error {
				// The rejected put must not have claimed its hash either (puts are all-or-nothing).
				if _, err := tx.GetTokenByHash("H2"); err == nil {
					return errors.New("hash H2 indexed by a rejected put")
				}
				_, err := tx.GetToken("t2")
				return err
			},
			allowed: func(tx app.Tx) error {
				return tx.PutToken(app.AccessToken{ID: "t3", UserID: "u2", Name: "ci", Hash: "H3"})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTemp(t)
			update(t, db, tc.setup)
			wantConflict(t, db.Update(context.Background(), tc.conflict), tc.code)
			// Swallowing the conflict inside a committed transaction must leave nothing behind.
			update(t, db, func(tx app.Tx) error {
				wantConflict(t, tc.conflict(tx), tc.code)
				return nil
			})
			view(t, db, func(tx app.Tx) error {
				wantNotFound(t, tc.absent(tx))
				return nil
			})
			update(t, db, tc.allowed)
		})
	}
}

func TestIndexMaintenance(t *testing.T) {
	t.Run("user rename", func(t *testing.T) {
		db := openTemp(t)
		update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u1", Username: "alice"}) })
		update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u1", Username: "alicia"}) })
		view(t, db, func(tx app.Tx) error {
			_, err := tx.GetUserByName("alice")
			wantNotFound(t, err)
			if u := must[app.User](t)(tx.GetUserByName("alicia")); u.ID != "u1" {
				t.Fatalf("got %v", u)
			}
			return nil
		})
		// The old name is free again.
		update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u2", Username: "alice"}) })
		update(t, db, func(tx app.Tx) error { return tx.DeleteUser("u1") })
		update(t, db, func(tx app.Tx) error { return tx.PutUser(app.User{ID: "u3", Username: "alicia"}) })
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "users", userIDs(must[[]app.User](t)(tx.ListUsers())), []string{"u2", "u3"})
			return nil
		})
	})
	t.Run("ssh key moves user", func(t *testing.T) {
		db := openTemp(t)
		update(t, db, func(tx app.Tx) error {
			if err := tx.PutSSHKey(app.SSHKey{ID: "k1", UserID: "u1", Fingerprint: "fp", CreatedAt: at(1)}); err != nil {
				return err
			}
			return tx.PutSSHKey(app.SSHKey{ID: "k2", UserID: "u1", Fingerprint: "fp2", CreatedAt: at(2)})
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutSSHKey(app.SSHKey{ID: "k1", UserID: "u2", Fingerprint: "fp", CreatedAt: at(1)})
		})
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "u1 keys", keyIDs(must[[]app.SSHKey](t)(tx.ListSSHKeys("u1"))), []string{"k2"})
			eqIDs(t, "u2 keys", keyIDs(must[[]app.SSHKey](t)(tx.ListSSHKeys("u2"))), []string{"k1"})
			eqIDs(t, "all keys", keyIDs(must[[]app.SSHKey](t)(tx.ListSSHKeys(""))), []string{"k1", "k2"})
			return nil
		})
		// fp is free under u1 now; changing a fingerprint frees the old one.
		update(t, db, func(tx app.Tx) error {
			if err := tx.PutSSHKey(app.SSHKey{ID: "k3", UserID: "u1", Fingerprint: "fp"}); err != nil {
				return err
			}
			return tx.PutSSHKey(app.SSHKey{ID: "k2", UserID: "u1", Fingerprint: "fp9", CreatedAt: at(2)})
		})
		update(t, db, func(tx app.Tx) error { return tx.PutSSHKey(app.SSHKey{ID: "k4", UserID: "u1", Fingerprint: "fp2"}) })
		update(t, db, func(tx app.Tx) error { return tx.DeleteSSHKey("k1") })
		update(t, db, func(tx app.Tx) error { return tx.PutSSHKey(app.SSHKey{ID: "k5", UserID: "u2", Fingerprint: "fp"}) })
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "u2 keys", keyIDs(must[[]app.SSHKey](t)(tx.ListSSHKeys("u2"))), []string{"k5"})
			return nil
		})
	})
	t.Run("host short id and owner change", func(t *testing.T) {
		db := openTemp(t)
		update(t, db, func(tx app.Tx) error {
			return tx.PutHost(app.Host{ID: "h1", ShortID: "aaa", UserID: "u1", CreatedAt: at(1)})
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutHost(app.Host{ID: "h1", ShortID: "bbb", UserID: "u2", CreatedAt: at(1)})
		})
		view(t, db, func(tx app.Tx) error {
			_, err := tx.GetHostByShortID("aaa")
			wantNotFound(t, err)
			must[app.Host](t)(tx.GetHostByShortID("bbb"))
			eqIDs(t, "u1 hosts", hostIDs(must[[]app.Host](t)(tx.ListHostsByUser("u1"))), nil)
			eqIDs(t, "u2 hosts", hostIDs(must[[]app.Host](t)(tx.ListHostsByUser("u2"))), []string{"h1"})
			return nil
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutHost(app.Host{ID: "h2", ShortID: "aaa", UserID: "u2", CreatedAt: at(2)})
		})
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "hosts", hostIDs(must[[]app.Host](t)(tx.ListHosts())), []string{"h1", "h2"})
			eqIDs(t, "u2 hosts", hostIDs(must[[]app.Host](t)(tx.ListHostsByUser("u2"))), []string{"h1", "h2"})
			return nil
		})
		update(t, db, func(tx app.Tx) error { return tx.DeleteHost("h1") })
		update(t, db, func(tx app.Tx) error { return tx.PutHost(app.Host{ID: "h3", ShortID: "bbb", UserID: "u3"}) })
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "u2 hosts", hostIDs(must[[]app.Host](t)(tx.ListHostsByUser("u2"))), []string{"h2"})
			return nil
		})
	})
	t.Run("binding moves host and egress", func(t *testing.T) {
		db := openTemp(t)
		update(t, db, func(tx app.Tx) error {
			return tx.PutBinding(app.Binding{ID: "b1", HostID: "h1", EgressIPID: "e1"})
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutBinding(app.Binding{ID: "b1", HostID: "h2", EgressIPID: "e2"})
		})
		view(t, db, func(tx app.Tx) error {
			_, err := tx.GetBindingByHost("h1")
			wantNotFound(t, err)
			must[app.Binding](t)(tx.GetBindingByHost("h2"))
			eqIDs(t, "e1", bindingIDs(must[[]app.Binding](t)(tx.ListBindingsByEgress("e1"))), nil)
			eqIDs(t, "e2", bindingIDs(must[[]app.Binding](t)(tx.ListBindingsByEgress("e2"))), []string{"b1"})
			return nil
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutBinding(app.Binding{ID: "b2", HostID: "h1", EgressIPID: "e2", CreatedAt: at(1)})
		})
		update(t, db, func(tx app.Tx) error { return tx.DeleteBinding("b1") })
		update(t, db, func(tx app.Tx) error { return tx.PutBinding(app.Binding{ID: "b3", HostID: "h2", EgressIPID: "e1"}) })
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "e2", bindingIDs(must[[]app.Binding](t)(tx.ListBindingsByEgress("e2"))), []string{"b2"})
			eqIDs(t, "all", bindingIDs(must[[]app.Binding](t)(tx.ListBindings())), []string{"b3", "b2"})
			return nil
		})
	})
	t.Run("token rename, rehash, move", func(t *testing.T) {
		db := openTemp(t)
		update(t, db, func(tx app.Tx) error {
			return tx.PutToken(app.AccessToken{ID: "t1", UserID: "u1", Name: "a", Hash: "H1"})
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutToken(app.AccessToken{ID: "t1", UserID: "u2", Name: "b", Hash: "H2"})
		})
		view(t, db, func(tx app.Tx) error {
			_, err := tx.GetTokenByHash("H1")
			wantNotFound(t, err)
			_, err = tx.GetTokenByName("u1", "a")
			wantNotFound(t, err)
			must[app.AccessToken](t)(tx.GetTokenByHash("H2"))
			if tok := must[app.AccessToken](t)(tx.GetTokenByName("u2", "b")); tok.ID != "t1" {
				t.Fatalf("got %v", tok)
			}
			eqIDs(t, "u1", tokenIDs(must[[]app.AccessToken](t)(tx.ListTokens("u1"))), nil)
			eqIDs(t, "u2", tokenIDs(must[[]app.AccessToken](t)(tx.ListTokens("u2"))), []string{"t1"})
			return nil
		})
		update(t, db, func(tx app.Tx) error {
			return tx.PutToken(app.AccessToken{ID: "t2", UserID: "u1", Name: "a", Hash: "H1", CreatedAt: at(1)})
		})
		update(t, db, func(tx app.Tx) error { return tx.DeleteToken("t1") })
		update(t, db, func(tx app.Tx) error {
			return tx.PutToken(app.AccessToken{ID: "t3", UserID: "u2", Name: "b", Hash: "H2", CreatedAt: at(2)})
		})
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "all", tokenIDs(must[[]app.AccessToken](t)(tx.ListTokens(""))), []string{"t2", "t3"})
			eqIDs(t, "u2", tokenIDs(must[[]app.AccessToken](t)(tx.ListTokens("u2"))), []string{"t3"})
			return nil
		})
	})
}

func TestInvalidID(t *testing.T) {
	db := openTemp(t)
	for name, fn := range map[string]func(app.Tx) error{
		"user":    func(tx app.Tx) error { return tx.PutUser(app.User{Username: "x"}) },
		"ssh key": func(tx app.Tx) error { return tx.PutSSHKey(app.SSHKey{}) },
		"egress":  func(tx app.Tx) error { return tx.PutEgress(app.EgressIP{}) },
		"host":    func(tx app.Tx) error { return tx.PutHost(app.Host{}) },
		"binding": func(tx app.Tx) error { return tx.PutBinding(app.Binding{}) },
		"token":   func(tx app.Tx) error { return tx.PutToken(app.AccessToken{}) },
		"task":    func(tx app.Tx) error { return tx.PutTask(app.Task{}) },
		"jwt":     func(tx app.Tx) error { return tx.RevokeJWT("", at(0)) },
	} {
		if err := db.Update(context.Background(), fn); !errors.Is(err, app.ErrInvalid) {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}

func TestTasks(t *testing.T) {
	db := openTemp(t)
	tasks := []app.Task{
		{ID: "t1", Kind: app.TaskHostCreate, State: app.TaskSucceeded, HostID: "h1", CreatedAt: at(1)},
		{ID: "t2", Kind: app.TaskHostStart, State: app.TaskQueued, HostID: "h2", CreatedAt: at(2)},
		{ID: "t3", Kind: app.TaskHostStop, State: app.TaskRunning, HostID: "h1", CreatedAt: at(3)},
		{ID: "t4", Kind: app.TaskHostStop, State: app.TaskQueued, HostID: "h1", CreatedAt: at(3)}, // same time as t3
		{ID: "t5", Kind: app.TaskHostPurge, State: app.TaskFailed, CreatedAt: at(4), Error: &app.TaskError{Code: "x", Message: "y"}},
		{ID: "t0", Kind: app.TaskHostPurge, State: app.TaskQueued, HostID: "h2"}, // zero time sorts oldest
	}
	update(t, db, func(tx app.Tx) error {
		for _, tk := range tasks {
			if err := tx.PutTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, db, func(tx app.Tx) error {
		got := must[app.Task](t)(tx.GetTask("t5"))
		if !reflect.DeepEqual(got, tasks[4]) {
			t.Fatalf("got %+v", got)
		}
		return nil
	})
	listTests := []struct {
		name  string
		host  string
		limit int
		want  []string
	}{
		{"all", "", 0, []string{"t5", "t4", "t3", "t2", "t1", "t0"}},
		{"limit", "", 2, []string{"t5", "t4"}},
		{"negative limit", "", -1, []string{"t5", "t4", "t3", "t2", "t1", "t0"}},
		{"host h1", "h1", 0, []string{"t4", "t3", "t1"}},
		{"host h1 limit", "h1", 1, []string{"t4"}},
		{"host h2", "h2", 0, []string{"t2", "t0"}},
		{"host prefix of another", "h", 0, nil},
		{"unknown host", "h9", 0, nil},
	}
	for _, tc := range listTests {
		t.Run("ListTasks/"+tc.name, func(t *testing.T) {
			view(t, db, func(tx app.Tx) error {
				eqIDs(t, "tasks", taskIDs(must[[]app.Task](t)(tx.ListTasks(tc.host, tc.limit))), tc.want)
				return nil
			})
		})
	}
	stateTests := []struct {
		name   string
		states []app.TaskState
		want   []string
	}{
		{"none", nil, nil},
		{"queued", []app.TaskState{app.TaskQueued}, []string{"t0", "t2", "t4"}},
		{"queued+running", []app.TaskState{app.TaskRunning, app.TaskQueued}, []string{"t0", "t2", "t3", "t4"}},
		{"duplicate state", []app.TaskState{app.TaskQueued, app.TaskQueued}, []string{"t0", "t2", "t4"}},
		{"failed", []app.TaskState{app.TaskFailed}, []string{"t5"}},
		{"unknown", []app.TaskState{"nope"}, nil},
	}
	for _, tc := range stateTests {
		t.Run("ListTasksByState/"+tc.name, func(t *testing.T) {
			view(t, db, func(tx app.Tx) error {
				eqIDs(t, "tasks", taskIDs(must[[]app.Task](t)(tx.ListTasksByState(tc.states...))), tc.want)
				return nil
			})
		})
	}
	t.Run("state and host change", func(t *testing.T) {
		update(t, db, func(tx app.Tx) error {
			tk := tasks[3]
			tk.State, tk.HostID = app.TaskSucceeded, "h2"
			return tx.PutTask(tk)
		})
		view(t, db, func(tx app.Tx) error {
			eqIDs(t, "queued", taskIDs(must[[]app.Task](t)(tx.ListTasksByState(app.TaskQueued))), []string{"t0", "t2"})
			eqIDs(t, "succeeded", taskIDs(must[[]app.Task](t)(tx.ListTasksByState(app.TaskSucceeded))), []string{"t1", "t4"})
			eqIDs(t, "h1", taskIDs(must[[]app.Task](t)(tx.ListTasks("h1", 0))), []string{"t3", "t1"})
			eqIDs(t, "h2", taskIDs(must[[]app.Task](t)(tx.ListTasks("h2", 0))), []string{"t4", "t2", "t0"})
			eqIDs(t, "all", taskIDs(must[[]app.Task](t)(tx.ListTasks("", 0))), []string{"t5", "t4", "t3", "t2", "t1", "t0"})
			return nil
		})
	})
}

func TestRevocations(t *testing.T) {
	db := openTemp(t)
	update(t, db, func(tx app.Tx) error {
		for jti, exp := range map[string]time.Time{"a": at(10), "b": at(20), "c": at(30), "d": at(40)} {
			if err := tx.RevokeJWT(jti, exp); err != nil {
				return err
			}
		}
		// Re-revoking moves the expiry (and its index entry).
		return tx.RevokeJWT("d", at(5))
	})
	revoked := func(want map[string]bool) {
		t.Helper()
		view(t, db, func(tx app.Tx) error {
			for jti, w := range want {
				if got := must[bool](t)(tx.IsJWTRevoked(jti)); got != w {
					t.Errorf("IsJWTRevoked(%s) = %v, want %v", jti, got, w)
				}
			}
			return nil
		})
	}
	revoked(map[string]bool{"a": true, "b": true, "c": true, "d": true, "zz": false, "": false})
	update(t, db, func(tx app.Tx) error { return tx.PurgeRevocations(at(20)) }) // strictly before
	revoked(map[string]bool{"a": false, "b": true, "c": true, "d": false})
	update(t, db, func(tx app.Tx) error { return tx.PurgeRevocations(at(31)) })
	revoked(map[string]bool{"b": false, "c": false})
	if err := db.db.View(func(btx *boltTx) error {
		if n := btx.Bucket(bRevocationsByExpiry).Stats().KeyN; n != 0 {
			t.Errorf("expiry index holds %d keys after full purge", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
