package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// fuzzInputs makes a fresh value of every request body type the API decodes.
var fuzzInputs = []struct {
	name string
	new  func() any
}{
	{"CreateUserInput", func() any { return new(app.CreateUserInput) }},
	{"EgressInput", func() any { return new(app.EgressInput) }},
	{"CreateHostInput", func() any { return new(app.CreateHostInput) }},
	{"BindingInput", func() any { return new(app.BindingInput) }},
	{"TokenInput", func() any { return new(app.TokenInput) }},
	{"PatchUserInput", func() any { return new(app.PatchUserInput) }},
	{"ChangePasswordInput", func() any { return new(app.ChangePasswordInput) }},
	{"AddKeyInput", func() any { return new(app.AddKeyInput) }},
	{"ExpiryInput", func() any { return new(app.ExpiryInput) }},
	{"CompatTokenInput", func() any { return new(app.CompatTokenInput) }},
}

// fuzzCheckDecodeErr: nil, or an *app.Error of KindBadRequest/KindTooLarge with a code and message.
func fuzzCheckDecodeErr(t *testing.T, what string, data []byte, err error) *app.Error {
	t.Helper()
	if err == nil {
		return nil
	}
	ae, ok := err.(*app.Error)
	if !ok {
		t.Fatalf("%s: %q: error %T %v is not an *app.Error", what, data, err, err)
	}
	if ae.Kind != app.KindBadRequest && ae.Kind != app.KindTooLarge {
		t.Fatalf("%s: %q: kind %d (%v)", what, data, ae.Kind, ae)
	}
	if ae.Code == "" || ae.Message == "" {
		t.Fatalf("%s: %q: error without code or message: %#v", what, data, ae)
	}
	return ae
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		seedLoginBody, seedCreateUserBody, seedDisableBody, seedExpiryBody, seedExpiryClearBody, seedAddKeyBody,
		seedWireGuardBody, seedShadowsocksBody, seedVMessBody, seedSocksBody, seedTrojanBody, seedHTTPProxyBody,
		seedUpdateEgressBody, seedCreateHostBody, seedBindingBody, seedChangePasswordBody, seedBootstrapBody, seedEntryAuthBody,
		``, ` `, `{}`, `null`, `[]`, `"x"`, `1`, `{"a":1}`, `{} {}`, `{}x`, `{"username":`, `{"username":1}`,
		`{"expires_at":"tomorrow"}`, `{"expires_at":5}`, `{"expires_at":"2026-12-31T23:59:59Z","expires_at":null}`,
		`{"cpu":1e400}`, `{"memory_mb":1.5}`, `{"pids":-9223372036854775809}`, `{"proxy_config":{"type":"socks"}}`,
		`{"expires_in_days":30,"expires_at":"never"}`, `{"name":"\ud800"}`, "{\"name\":\"\xff\"}", `{"USERNAME":"x"}`,
		`{"status":"active","role":"admin"}`, `{"public_key":"ssh-ed25519 AAAA"}`, `{"label":{"a":[{"b":null}]}}`,
	} {
		f.Add([]byte(s), uint16(64))
		f.Add([]byte(s), uint16(4096))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		max := int64(limit%2048) + 1
		for _, in := range fuzzInputs {
			// Unbounded: never too large.
			v := in.new()
			ae := fuzzCheckDecodeErr(t, in.name, data, api.DecodeJSON(bytes.NewReader(data), v))
			if ae != nil && ae.Kind == app.KindTooLarge {
				t.Fatalf("%s: %q: too large without a limit", in.name, data)
			}
			if ae == nil {
				// A body it accepted re-encodes to one it accepts again.
				j, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("%s: re-encoding %#v: %v", in.name, v, err)
				}
				if err := api.DecodeJSON(bytes.NewReader(j), in.new()); err != nil {
					t.Fatalf("%s: %q accepted, its re-encoding %s refused: %v", in.name, data, j, err)
				}
			}
			// Bounded the way the server bounds it: over the limit is 413, under never is.
			ae = fuzzCheckDecodeErr(t, in.name, data, api.DecodeJSON(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), max), in.new()))
			tooLarge := ae != nil && ae.Kind == app.KindTooLarge
			if tooLarge != (int64(len(data)) > max) {
				t.Fatalf("%s: %d bytes, limit %d: error %v", in.name, len(data), max, ae)
			}
		}
	})
}
