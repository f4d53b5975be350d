package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// tokCountingStore is an app.Store decorator over a real storage.DB that counts token lookups.
type tokCountingStore struct {
	app.Store
	byHash, byID, byName atomic.Int64
}

func (c *tokCountingStore) View(ctx context.Context, fn func(app.Tx) error) error {
	return c.Store.View(ctx, func(tx app.Tx) error { return fn(tokCountingTx{tx, c}) })
}

func (c *tokCountingStore) Update(ctx context.Context, fn func(app.Tx) error) error {
	return c.Store.Update(ctx, func(tx app.Tx) error { return fn(tokCountingTx{tx, c}) })
}

func (c *tokCountingStore) reset() { c.byHash.Store(0); c.byID.Store(0); c.byName.Store(0) }

type tokCountingTx struct {
	app.Tx
	c *tokCountingStore
}

func (t tokCountingTx) GetTokenByHash(h string) (app.AccessToken, error) {
	t.c.byHash.Add(1)
	return t.Tx.GetTokenByHash(h)
}

func (t tokCountingTx) GetToken(id string) (app.AccessToken, error) {
	t.c.byID.Add(1)
	return t.Tx.GetToken(id)
}

func (t tokCountingTx) GetTokenByName(userID, name string) (app.AccessToken, error) {
	t.c.byName.Add(1)
	return t.Tx.GetTokenByName(userID, name)
}

const tokAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// tokChecksum is the documented checksum, written independently of the package: the CRC32
// (IEEE) of the random part as 6 base62 digits, most significant first.
func tokChecksum(body string) string {
	v := crc32.ChecksumIEEE([]byte(body))
	b := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		b[i] = tokAlphabet[v%62]
		v /= 62
	}
	return string(b)
}

func TestTokenFormat(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		v := app.NewTokenValue()
		if len(v) != 46 || !strings.HasPrefix(v, "ccp_") {
			t.Fatalf("value %q: want ccp_ + 42 characters", v)
		}
		body, sum := v[4:40], v[40:]
		for _, r := range body {
			if !strings.ContainsRune(tokAlphabet, r) {
				t.Fatalf("value %q has a non-base62 character", v)
			}
		}
		if sum != tokChecksum(body) {
			t.Fatalf("value %q: checksum %q, want %q", v, sum, tokChecksum(body))
		}
		if !app.WellFormedToken(v) {
			t.Fatalf("value %q not well formed", v)
		}
		if seen[v] {
			t.Fatalf("value repeated")
		}
		seen[v] = true
	}
}

// Malformed values are refused before any storage lookup; a well-formed value costs exactly
// one indexed lookup by hash. Through the REST API, on a real bbolt store.
func TestTokenMalformedRejectedWithoutLookup(t *testing.T) {
	var store *tokCountingStore
	env := testenv.NewService(t, testenv.WithConfig(func(c *app.Config) { c.TokenHashKey = []byte("k") }),
		testenv.WithStore(func(db app.Store) app.Store { store = &tokCountingStore{Store: db}; return store }))
	svc := env.Service
	srv := httptest.NewServer(api.New(svc, api.Config{}, env.Logger).Handler())
	t.Cleanup(srv.Close)
	if _, err := svc.EnsureAdmin(context.Background(), "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, bearer string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	status, b := do("POST", "/v1/auth/login", "", map[string]string{"username": "admin", "password": "admin-password"})
	var login struct{ Token string }
	if status != 200 || json.Unmarshal(b, &login) != nil {
		t.Fatalf("login %d %s", status, b)
	}
	status, b = do("POST", "/v1/tokens", login.Token, map[string]any{"name": "ci"})
	var created struct{ Token string }
	if status != 201 || json.Unmarshal(b, &created) != nil {
		t.Fatalf("create %d %s", status, b)
	}
	good := created.Token
	body := good[4:40]
	flip := func(s string, i int) string {
		c := byte('a')
		if s[i] == 'a' {
			c = 'b'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	badChar := body[:10] + "-" + body[11:]
	cases := []struct {
		name    string
		value   string
		status  int
		lookups int64
	}{
		{"bad checksum", flip(good, len(good)-1), 401, 0},
		{"random part altered", flip(good, 10), 401, 0},
		{"one character short", good[:len(good)-1], 401, 0},
		{"one character long", good + "A", 401, 0},
		{"prefix only", "ccp_", 401, 0},
		{"wrong prefix", "ccq_" + good[4:], 401, 0},
		{"upper-case prefix", "CCP_" + good[4:], 401, 0},
		{"other vendor's prefix", "ghp_" + good[4:], 401, 0},
		{"no prefix", good[4:], 401, 0},
		{"non-base62 character, valid checksum", "ccp_" + badChar + tokChecksum(badChar), 401, 0},
		{"trailing junk", good + " x", 401, 0},
		{"well-formed unknown", app.NewTokenValue(), 401, 1},
		{"valid", good, 200, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store.reset()
			status, b := do("GET", "/v1/auth/me", c.value, nil)
			if status != c.status {
				t.Fatalf("status %d %s, want %d", status, b, c.status)
			}
			if got := store.byHash.Load(); got != c.lookups {
				t.Errorf("GetTokenByHash called %d times, want %d", got, c.lookups)
			}
			if c.lookups == 0 && store.byID.Load()+store.byName.Load() != 0 {
				t.Errorf("other token lookups for a malformed value: by id %d, by name %d", store.byID.Load(), store.byName.Load())
			}
		})
	}
}
