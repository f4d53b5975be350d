package storage

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// checkDecodeRecord compares decodeRecord with encoding/json on raw: where encoding/json
// succeeds the two must agree exactly.
func checkDecodeRecord[T any](t *testing.T, raw []byte, garbage T) {
	t.Helper()
	var ref T
	refErr := json.Unmarshal(raw, &ref)
	got := garbage // the decoder must not keep anything of what was there
	err := decodeRecord(raw, &got)
	if refErr == nil && (err != nil || !reflect.DeepEqual(got, ref)) {
		t.Errorf("%s:\n got  %#v, %v\n want %#v", raw, got, err, ref)
	}
	if refErr != nil && err == nil {
		t.Errorf("%s: decoded %#v; encoding/json refuses it: %v", raw, got, refErr)
	}
}

func TestDecodeRecordMatchesEncodingJSON(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	t2 := time.Date(2025, 6, 7, 8, 9, 10, 0, ist)
	tokGarbage := app.AccessToken{ID: "garbage", Write: true, ExpiresAt: &t1, LastUsedIP: "garbage"}
	for _, tok := range []app.AccessToken{
		{},
		{ID: "t1", UserID: "u1", Name: "ci", Hash: "abc", Hint: "…wxyz", Write: true, Active: true, ExpiresAt: &t1,
			CreatedAt: t1, UpdatedAt: t2, LastUsedAt: &t2, LastUsedIP: "2001:db8::1"},
		{ID: "t2", Name: `quote " and \ back` + "\n", Active: false, CreatedAt: t2},
		{ID: "t3", Name: "<b> & ünïcödé 🎉", Hint: "bad \xff"},
	} {
		raw, err := json.Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		checkDecodeRecord(t, raw, tokGarbage)
	}
	userGarbage := app.User{ID: "garbage", Version: 9, ExpiresAt: &t1, PasswordHash: "garbage"}
	for _, u := range []app.User{
		{},
		{ID: "u1", Username: "alice", Role: app.RoleAdmin, Status: app.UserActive, ExpiresAt: &t2, CreatedAt: t1,
			UpdatedAt: t2, PasswordHash: "$2a$10$abcdefghijklmnopqrstuv", Version: 42},
		{ID: "u2", Username: "bob", Version: -7},
		{ID: "u3", Version: 1 << 62},
	} {
		raw, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		checkDecodeRecord(t, raw, userGarbage)
	}
	// Inputs the fast path must hand over (or reject) rather than misread.
	for _, raw := range []string{
		`{"id":"a","write":1}`, `{"write":"true"}`, `{"write":null}`, `{"active":tru}`,
		`{"expires_at":"never"}`, `{"expires_at":0}`, `{"created_at":null}`, `{"last_used_at":nul}`,
		`{"ID":"a"}`, `{"id":"a","extra":1}`, `{ "id" : "a" }`, `{"id":"a",}`, `{"id":"a"}x`, `{"id":null}`,
		`{"id":"a"`, `[]`, ``, `{}`, `{"name":"a\u0041"}`,
	} {
		checkDecodeRecord(t, []byte(raw), tokGarbage)
	}
	for _, raw := range []string{
		`{"version":01}`, `{"version":1.0}`, `{"version":1e3}`, `{"version":-}`, `{"version":"1"}`, `{"version":-0}`,
		`{"version":9223372036854775807}`, `{"version":9223372036854775808}`, `{"version":+1}`, `{"version":}`,
		`{"expires_at":null,"username":"x"}`, `{"Username":"x"}`, `{"password_hash":"a\"b"}`,
	} {
		checkDecodeRecord(t, []byte(raw), userGarbage)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(`{"id":"a","write":true,"active":false,"expires_at":null,"created_at":"2025-01-01T00:00:00Z"}`)
	f.Add(`{"id":"u","username":"a","version":12,"expires_at":"2025-01-01T00:00:00.5+05:30"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		checkDecodeRecord(t, []byte(raw), app.AccessToken{})
		checkDecodeRecord(t, []byte(raw), app.User{})
	})
}
