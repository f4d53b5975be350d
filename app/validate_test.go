package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// valCheck fails unless err is nil (field "") or an invalid-input error naming field.
func valCheck(t *testing.T, what string, err error, field string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: accepted, want an error on %s", what, field)
	}
	ae := app.AsError(err)
	if ae.Kind != app.KindInvalid || ae.Field != field {
		t.Fatalf("%s: error kind %d field %q (%v), want invalid %q", what, ae.Kind, ae.Field, err, field)
	}
	if want := "invalid_" + strings.ReplaceAll(field, ".", "_"); string(ae.Code) != want {
		t.Fatalf("%s: code %q, want %q", what, ae.Code, want)
	}
}

func TestValidateUsername(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"abc", true}, {"newuser", true}, {"a.b_c-d", true}, {"user2", true}, {"007", true}, {"...", true},
		{strings.Repeat("z", 50), true},
		{"", false}, {"ab", false}, {strings.Repeat("z", 51), false}, {"Admin", false}, {"bad name", false},
		{"émile", false}, {"bob+host", false}, {"bob@host", false}, {"a/b", false}, {"user\n", false},
		{"\tuser", false}, {"us:er", false}, {"用户名", false},
	} {
		field := ""
		if !c.ok {
			field = "username"
		}
		valCheck(t, "username "+c.name, app.ValidateUsername(c.name), field)
	}
}

func TestValidatePassword(t *testing.T) {
	for _, c := range []struct {
		pw string
		ok bool
	}{
		{"12345678", true}, {"min-8-chars", true}, {strings.Repeat("x", 72), true}, {"пароль-пароль", true},
		{"", false}, {"1234567", false}, {"new", false}, {strings.Repeat("x", 73), false},
		{strings.Repeat("é", 37), false}, // 74 bytes: bcrypt reads only 72
	} {
		for _, field := range []string{"password", "new_password"} {
			want := ""
			if !c.ok {
				want = field
			}
			valCheck(t, field+" "+c.pw, app.ValidatePassword(field, c.pw), want)
		}
	}
}

func TestValidateWGKey(t *testing.T) {
	good := fuzzKey(1)
	raw, _ := base64.StdEncoding.DecodeString(good)
	nonCanonical := good[:42] + string(good[42]+1) + "=" // same 32 bytes, non-zero padding bits
	if b, err := base64.StdEncoding.DecodeString(nonCanonical); err != nil || string(b) != string(raw) {
		t.Fatalf("test setup: %q does not decode to the same key (%v)", nonCanonical, err)
	}
	for _, c := range []struct {
		name, key string
		ok        bool
	}{
		{"valid", good, true},
		{"zero key", base64.StdEncoding.EncodeToString(make([]byte, 32)), true},
		{"placeholder", "PeerPublicKeyBase64", false},
		{"new key placeholder", "NewKey", false},
		{"empty", "", false},
		{"31 bytes", base64.StdEncoding.EncodeToString(raw[:31]), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(raw, 1)), false},
		{"no padding", strings.TrimSuffix(good, "="), false},
		{"url alphabet", base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xff", 32))), false},
		{"embedded newline", good[:20] + "\n" + good[20:], false},
		{"trailing newline", good + "\n", false},
		{"carriage return", good[:10] + "\r" + good[10:], false},
		{"non-canonical padding bits", nonCanonical, false},
		{"leading space", " " + good, false},
		{"hex", strings.Repeat("ab", 32), false},
	} {
		field := ""
		if !c.ok {
			field = "wg_public_key"
		}
		valCheck(t, c.name, app.ValidateWGKey("wg_public_key", c.key), field)
	}
}

// valWG is a valid WireGuard egress IP with mods applied.
func valWG(mod func(*app.EgressIP)) app.EgressIP {
	e := app.EgressIP{Label: "hk-wg-01", IPAddress: "203.0.113.10", TunnelType: "wireguard",
		WGEndpoint: "vpn.example.com:51820", WGPublicKey: fuzzKey(1), WGPeerAddress: "10.0.0.2/32"}
	if mod != nil {
		mod(&e)
	}
	return e
}

func TestValidateEgressEndpoint(t *testing.T) {
	for _, c := range []struct {
		ep string
		ok bool
	}{
		{"vpn.example.com:51820", true}, {"vpn-provider.example.com:51820", true}, {"new-endpoint:51820", true},
		{"203.0.113.1:51820", true}, {"[2001:db8::1]:51820", true}, {"vpn.example.com.:1", true},
		{"host:65535", true}, {"a:1", true},
		{"", false}, {"vpn.example.com", false}, {"vpn.example.com:", false}, {":51820", false},
		{"vpn.example.com:0", false}, {"vpn.example.com:65536", false}, {"vpn.example.com:-1", false},
		{"vpn.example.com:wg", false}, {"2001:db8::1:51820", false}, {"[fe80::1%eth0]:51820", false},
		{"[fe80::1%\nPostUp = sh]:51820", false}, {"bad_host:51820", false}, {"-bad.example.com:1", false},
		{strings.Repeat("a", 64) + ".com:1", false}, {strings.Repeat("a.", 127) + "com:1", false},
		{"vpn.example.com:51820\n", false}, {"vpn example.com:51820", false}, {"http://vpn.example.com:51820", false},
	} {
		e := valWG(func(e *app.EgressIP) { e.WGEndpoint = c.ep })
		field := ""
		if !c.ok {
			field = "wg_endpoint"
		}
		valCheck(t, "endpoint "+c.ep, app.ValidateEgress(&e), field)
	}
}

func TestValidateEgressAllowedIPs(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "0.0.0.0/0, ::/0"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"10.0.0.0/8,192.168.0.0/16", "10.0.0.0/8, 192.168.0.0/16"},
		{" 10.0.0.0/8 ,  fd00::/8 ", "10.0.0.0/8, fd00::/8"},
		{"10.1.2.3/8", "10.1.2.3/8"},
		{"10.0.0.0", ""}, {"10.0.0.0/33", ""}, {"::/129", ""}, {"10.0.0.0/8,", ""}, {",", ""},
		{"10.0.0.0/8; 1.2.3.4/32", ""}, {"example.com/8", ""}, {"10.0.0.0/8\nPostUp = x", ""}, {"fe80::/10%eth0", ""},
	} {
		e := valWG(func(e *app.EgressIP) { e.WGAllowedIPs = c.in })
		err := app.ValidateEgress(&e)
		if c.want == "" {
			valCheck(t, "allowed "+c.in, err, "wg_allowed_ips")
			continue
		}
		valCheck(t, "allowed "+c.in, err, "")
		if e.WGAllowedIPs != c.want {
			t.Fatalf("allowed %q normalised to %q, want %q", c.in, e.WGAllowedIPs, c.want)
		}
	}
}

func TestValidateEgressPeerAndDNS(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"10.0.0.2/32", "10.0.0.2/32"},
		{"10.0.0.2", "10.0.0.2/32"},
		{"fd00::2", "fd00::2/128"},
		{"10.0.0.2/24", "10.0.0.2/24"},
		{"10.0.0.2, fd00::2/64", "10.0.0.2/32, fd00::2/64"},
		{"", ""}, {"10.0.0.300", ""}, {"10.0.0.2/40", ""}, {"peer", ""}, {"10.0.0.2,", ""},
	} {
		e := valWG(func(e *app.EgressIP) { e.WGPeerAddress = c.in })
		err := app.ValidateEgress(&e)
		if c.want == "" {
			valCheck(t, "peer "+c.in, err, "wg_peer_address")
			continue
		}
		valCheck(t, "peer "+c.in, err, "")
		if e.WGPeerAddress != c.want {
			t.Fatalf("peer %q normalised to %q, want %q", c.in, e.WGPeerAddress, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", ""}, {"1.1.1.1", "1.1.1.1"}, {"2606:4700:4700:0::1111", "2606:4700:4700::1111"},
		{"dns.example.com", "!"}, {"1.1.1.1:53", "!"}, {"1.1.1.1, 8.8.8.8", "!"}, {"fe80::1%eth0", "!"},
		{"fe80::1%\nPostUp = x", "!"},
	} {
		e := valWG(func(e *app.EgressIP) { e.WGDNSServer = c.in })
		err := app.ValidateEgress(&e)
		if c.want == "!" {
			valCheck(t, "dns "+c.in, err, "wg_dns_server")
			continue
		}
		valCheck(t, "dns "+c.in, err, "")
		if e.WGDNSServer != c.want {
			t.Fatalf("dns %q normalised to %q, want %q", c.in, e.WGDNSServer, c.want)
		}
	}
}

func TestValidateEgressFields(t *testing.T) {
	proxy := json.RawMessage(`{"type":"socks","server":"192.0.2.50","server_port":1080}`)
	for _, c := range []struct {
		name, field string
		mod         func(*app.EgressIP)
	}{
		{"valid", "", nil},
		{"label with spaces", "", func(e *app.EgressIP) { e.Label = "HK 01 (wg)"[:5] }},
		{"label 64", "", func(e *app.EgressIP) { e.Label = strings.Repeat("l", 64) }},
		{"label 65", "label", func(e *app.EgressIP) { e.Label = strings.Repeat("l", 65) }},
		{"label empty", "label", func(e *app.EgressIP) { e.Label = "" }},
		{"label leading dot", "label", func(e *app.EgressIP) { e.Label = ".wg" }},
		{"label newline", "label", func(e *app.EgressIP) { e.Label = "wg\n" }},
		{"ip v6", "", func(e *app.EgressIP) { e.IPAddress = "2001:db8::10" }},
		{"ip empty", "ip_address", func(e *app.EgressIP) { e.IPAddress = "" }},
		{"ip bad", "ip_address", func(e *app.EgressIP) { e.IPAddress = "203.0.113.256" }},
		{"ip zone", "ip_address", func(e *app.EgressIP) { e.IPAddress = "fe80::1%eth0" }},
		{"ip leading zero", "ip_address", func(e *app.EgressIP) { e.IPAddress = "203.0.113.010" }},
		{"provider 64", "", func(e *app.EgressIP) { e.Provider = strings.Repeat("p", 64) }},
		{"provider 65", "provider", func(e *app.EgressIP) { e.Provider = strings.Repeat("p", 65) }},
		{"tunnel empty", "tunnel_type", func(e *app.EgressIP) { e.TunnelType = "" }},
		{"tunnel unknown", "tunnel_type", func(e *app.EgressIP) { e.TunnelType = "openvpn" }},
		{"wg with proxy_config", "proxy_config", func(e *app.EgressIP) { e.ProxyConfig = proxy }},
		{"public key missing", "wg_public_key", func(e *app.EgressIP) { e.WGPublicKey = "" }},
		{"private key bad", "wg_private_key", func(e *app.EgressIP) { e.WGPrivateKey = "PrivateKeyBase64" }},
		{"preshared key bad", "wg_preshared_key", func(e *app.EgressIP) { e.WGPresharedKey = "PresharedKeyBase64" }},
		{"proxy with wg fields", "tunnel_type", func(e *app.EgressIP) { e.TunnelType, e.ProxyConfig = "proxy", proxy }},
		{"proxy clean", "", func(e *app.EgressIP) {
			*e = app.EgressIP{Label: "px", IPAddress: "192.0.2.50", TunnelType: "proxy", ProxyConfig: proxy}
		}},
		{"proxy without config", "proxy_config", func(e *app.EgressIP) {
			*e = app.EgressIP{Label: "px", IPAddress: "192.0.2.50", TunnelType: "proxy"}
		}},
	} {
		e := valWG(c.mod)
		valCheck(t, c.name, app.ValidateEgress(&e), c.field)
	}
	// Defaults: provider manual, a private key generated when none is given.
	e := valWG(nil)
	if err := app.ValidateEgress(&e); err != nil || e.Provider != "manual" || app.ValidateWGKey("k", e.WGPrivateKey) != nil {
		t.Fatalf("defaults: %+v %v", e, err)
	}
}

func TestValidateProxyConfigPerType(t *testing.T) {
	const id = "b831381d-6324-4d53-ad4f-8cda48b30811"
	for _, c := range []struct {
		name, cfg, field string
	}{
		// Reference examples.
		{"shadowsocks example", `{"type":"shadowsocks","server":"198.51.100.5","server_port":8388,"method":"aes-256-gcm","password":"your-password"}`, ""},
		{"vmess example", `{"type":"vmess","server":"203.0.113.20","server_port":443,"uuid":"your-uuid","security":"auto","alter_id":0}`, "proxy_config.uuid"},
		{"socks example", `{"type":"socks","server":"192.0.2.50","server_port":1080,"username":"user","password":"pass"}`, ""},
		{"trojan example", `{"type":"trojan","server":"203.0.113.30","server_port":443,"password":"your-password","tls":{"enabled":true,"server_name":"your-domain.com"}}`, ""},
		{"http example", `{"type":"http","server":"192.0.2.100","server_port":8080,"username":"user","password":"pass"}`, ""},
		// Common to every type.
		{"not an object", `"socks://x"`, "proxy_config"},
		{"null", `null`, "proxy_config"},
		{"empty", ``, "proxy_config"},
		{"type missing", `{"server":"h","server_port":1}`, "proxy_config.type"},
		{"type unknown", `{"type":"wireguard","server":"h","server_port":1}`, "proxy_config.type"},
		{"server missing", `{"type":"http","server_port":1}`, "proxy_config.server"},
		{"server bad", `{"type":"http","server":"a b","server_port":1}`, "proxy_config.server"},
		{"server zone", `{"type":"http","server":"fe80::1%eth0","server_port":1}`, "proxy_config.server"},
		{"server v6", `{"type":"http","server":"2001:db8::1","server_port":1}`, ""},
		{"port missing", `{"type":"http","server":"h"}`, "proxy_config.server_port"},
		{"port high", `{"type":"http","server":"h","server_port":65536}`, "proxy_config.server_port"},
		{"port string", `{"type":"http","server":"h","server_port":"80"}`, "proxy_config"},
		{"tls server_name", `{"type":"http","server":"h","server_port":1,"tls":{"enabled":true,"server_name":"a b"}}`, "proxy_config.tls.server_name"},
		{"unknown sing-box fields kept", `{"type":"http","server":"h","server_port":1,"domain_strategy":"prefer_ipv4","multiplex":{"enabled":false}}`, ""},
		{"detour refused", `{"type":"http","server":"h","server_port":1,"detour":"x"}`, "proxy_config.detour"},
		{"multiplex refused", `{"type":"http","server":"h","server_port":1,"multiplex":{"enabled":true}}`, "proxy_config.multiplex"},
		{"v2ray transport refused", `{"type":"vmess","server":"h","server_port":1,"uuid":"` + id + `","transport":{"type":"ws"}}`, "proxy_config.transport"},
		{"tls on socks refused", `{"type":"socks","server":"h","server_port":1,"tls":{"enabled":true}}`, "proxy_config.tls"},
		// socks
		{"socks anonymous", `{"type":"socks","server":"h","server_port":1}`, ""},
		{"socks v4a", `{"type":"socks","server":"h","server_port":1,"version":"4a"}`, ""},
		{"socks v6", `{"type":"socks","server":"h","server_port":1,"version":"6"}`, "proxy_config.version"},
		{"socks password only", `{"type":"socks","server":"h","server_port":1,"password":"p"}`, "proxy_config.username"},
		{"socks username only", `{"type":"socks","server":"h","server_port":1,"username":"u"}`, ""},
		// http
		{"http password only", `{"type":"http","server":"h","server_port":1,"password":"p"}`, "proxy_config.username"},
		// shadowsocks
		{"ss method missing", `{"type":"shadowsocks","server":"h","server_port":1,"password":"p"}`, "proxy_config.method"},
		{"ss method unknown", `{"type":"shadowsocks","server":"h","server_port":1,"method":"rc4-md5","password":"p"}`, "proxy_config.method"},
		{"ss password missing", `{"type":"shadowsocks","server":"h","server_port":1,"method":"aes-128-gcm"}`, "proxy_config.password"},
		{"ss none needs no password", `{"type":"shadowsocks","server":"h","server_port":1,"method":"none"}`, ""},
		{"ss 2022", `{"type":"shadowsocks","server":"h","server_port":1,"method":"2022-blake3-aes-128-gcm","password":"p"}`, ""},
		// vmess
		{"vmess valid", `{"type":"vmess","server":"h","server_port":1,"uuid":"` + id + `"}`, ""},
		{"vmess uuid missing", `{"type":"vmess","server":"h","server_port":1}`, "proxy_config.uuid"},
		{"vmess security", `{"type":"vmess","server":"h","server_port":1,"uuid":"` + id + `","security":"rot13"}`, "proxy_config.security"},
		{"vmess alter_id", `{"type":"vmess","server":"h","server_port":1,"uuid":"` + id + `","alter_id":-1}`, "proxy_config.alter_id"},
		// vless
		{"vless valid", `{"type":"vless","server":"h","server_port":1,"uuid":"` + id + `"}`, ""},
		{"vless vision refused", `{"type":"vless","server":"h","server_port":1,"uuid":"` + id + `","flow":"xtls-rprx-vision"}`, "proxy_config.flow"},
		{"vless uuid bad", `{"type":"vless","server":"h","server_port":1,"uuid":"nope"}`, "proxy_config.uuid"},
		{"vless flow", `{"type":"vless","server":"h","server_port":1,"uuid":"` + id + `","flow":"other"}`, "proxy_config.flow"},
		// trojan
		{"trojan password missing", `{"type":"trojan","server":"h","server_port":1}`, "proxy_config.password"},
	} {
		out, err := app.ValidateProxyConfig(json.RawMessage(c.cfg))
		valCheck(t, c.name, err, c.field)
		if err == nil && !json.Valid(out) {
			t.Fatalf("%s: output %q", c.name, out)
		}
	}
}

func TestValidateCreateHostInput(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int64) *int64 { return &v }
	for _, c := range []struct {
		name  string
		in    app.CreateHostInput
		field string
	}{
		{"defaults", app.CreateHostInput{UserID: "u"}, ""},
		{"bounds low", app.CreateHostInput{UserID: "u", CPU: f(app.MinCPU), MemoryMB: i(app.MinMemoryMB), PIDs: i(app.MinPIDs)}, ""},
		{"bounds high", app.CreateHostInput{UserID: "u", CPU: f(app.MaxCPU), MemoryMB: i(app.MaxMemoryMB), PIDs: i(app.MaxPIDs)}, ""},
		{"image", app.CreateHostInput{UserID: "u", Image: "ghcr.io/acme/dev:1.2"}, ""},
		{"user missing", app.CreateHostInput{}, "user_id"},
		{"image bad", app.CreateHostInput{UserID: "u", Image: "Bad Image"}, "image"},
		{"image injection", app.CreateHostInput{UserID: "u", Image: "alpine;reboot"}, "image"},
		{"cpu low", app.CreateHostInput{UserID: "u", CPU: f(0.09)}, "cpu"},
		{"cpu high", app.CreateHostInput{UserID: "u", CPU: f(16.01)}, "cpu"},
		{"cpu NaN", app.CreateHostInput{UserID: "u", CPU: f(math.NaN())}, "cpu"},
		{"cpu Inf", app.CreateHostInput{UserID: "u", CPU: f(math.Inf(1))}, "cpu"},
		{"memory low", app.CreateHostInput{UserID: "u", MemoryMB: i(127)}, "memory_mb"},
		{"memory high", app.CreateHostInput{UserID: "u", MemoryMB: i(65537)}, "memory_mb"},
		{"pids low", app.CreateHostInput{UserID: "u", PIDs: i(63)}, "pids"},
		{"pids high", app.CreateHostInput{UserID: "u", PIDs: i(32769)}, "pids"},
	} {
		in := c.in
		valCheck(t, c.name, in.Validate("cloud-cli-proxy/managed:latest"), c.field)
		if c.name == "defaults" && (in.Image != "cloud-cli-proxy/managed:latest" || *in.CPU != app.DefaultCPU ||
			*in.MemoryMB != app.DefaultMemoryMB || *in.PIDs != app.DefaultPIDs) {
			t.Fatalf("defaults %+v", in)
		}
	}
}

func TestValidateCreateUserInput(t *testing.T) {
	in := app.CreateUserInput{Username: "newuser", Password: "min-8-chars"}
	if err := in.Validate(); err != nil || in.Role != app.RoleUser {
		t.Fatalf("default role: %+v %v", in, err)
	}
	for _, c := range []struct {
		in    app.CreateUserInput
		field string
	}{
		{app.CreateUserInput{Username: "v", Password: "password"}, "username"},
		{app.CreateUserInput{Username: "viewer1", Password: "short"}, "password"},
		{app.CreateUserInput{Username: "viewer1", Password: "password", Role: "superuser"}, "role"},
		{app.CreateUserInput{Username: "viewer1", Password: "password", Role: app.RoleViewer}, ""},
		{app.CreateUserInput{Username: "admin2", Password: "password", Role: app.RoleAdmin}, ""},
	} {
		in := c.in
		valCheck(t, in.Username+"/"+in.Role.String(), in.Validate(), c.field)
	}
}

func TestValidateParsePublicKey(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaBig, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaSmall, _ := rsa.GenerateKey(rand.Reader, 1024)
	ed := fuzzAuthorizedKey(t, edPub, "user@host")
	// An ssh-dss blob built by hand (crypto/dsa key generation is slow).
	dss := "ssh-dss " + base64.StdEncoding.EncodeToString(ssh.Marshal(struct {
		Name       string
		P, Q, G, Y *big.Int
	}{"ssh-dss", big.NewInt(23), big.NewInt(11), big.NewInt(4), big.NewInt(8)}))
	for _, c := range []struct {
		name, line, comment string
		ok                  bool
	}{
		{"ed25519", ed, "user@host", true},
		{"surrounding space", "\n  " + ed + "  \n", "user@host", true},
		{"options", `no-pty,from="10.0.0.0/8" ` + ed, "user@host", true},
		{"ecdsa", fuzzAuthorizedKey(t, &ecKey.PublicKey, "ec"), "ec", true},
		{"rsa 2048", fuzzAuthorizedKey(t, &rsaBig.PublicKey, "big"), "big", true},
		{"rsa 1024", fuzzAuthorizedKey(t, &rsaSmall.PublicKey, "small"), "", false},
		{"dsa", dss, "", false},
		{"placeholder", "ssh-ed25519 AAAA... user@host", "", false},
		{"empty", "", "", false},
		{"blank", "  \n ", "", false},
		{"type only", "ssh-ed25519", "", false},
		{"two keys", ed + "\n" + ed, "", false},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "", false},
		{"too long", "ssh-ed25519 " + strings.Repeat("A", 16400), "", false},
	} {
		pk, comment, err := app.ParsePublicKey(c.line)
		field := ""
		if !c.ok {
			field = "public_key"
		}
		valCheck(t, c.name, err, field)
		if c.ok && (pk == nil || comment != c.comment) {
			t.Fatalf("%s: key %v comment %q", c.name, pk, comment)
		}
	}
}

// TestWellFormedTokenFlip: a fresh value is well formed; changing any one character of it,
// to anything, makes it not well formed (prefix, alphabet or checksum catches it).
func TestWellFormedTokenFlip(t *testing.T) {
	replacements := []byte("0aZz9_-+/=. \x00\xff")
	for n := 0; n < 30; n++ {
		v := app.NewTokenValue()
		if !app.WellFormedToken(v) || len(v) != 46 || !strings.HasPrefix(v, app.TokenPrefix) {
			t.Fatalf("fresh value %q", v)
		}
		for i := 0; i < len(v); i++ {
			for _, c := range replacements {
				if m := fuzzFlip(v, i, c); app.WellFormedToken(m) {
					t.Fatalf("%q is well formed after changing byte %d of %q", m, i, v)
				}
			}
		}
		for _, m := range []string{v[:45], v + "0", v[1:], strings.ToUpper(v[:4]) + v[4:], " " + v[1:]} {
			if app.WellFormedToken(m) {
				t.Fatalf("%q is well formed", m)
			}
		}
	}
}

// valService is a service on a real bbolt file, with an admin and the REST door in front.
type valService struct {
	svc   *app.Service
	db    *storage.DB
	admin app.Principal
	srv   *httptest.Server
	jwt   string
}

func newValService(t *testing.T) *valService {
	t.Helper()
	env := testenv.NewService(t, testenv.WithConfig(func(c *app.Config) { c.ReconcileInterval = -1 }))
	svc, db := env.Service, env.DB
	ctx := context.Background()
	if _, err := svc.EnsureAdmin(ctx, "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Login(ctx, "127.0.0.1", "admin", "admin-password")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(svc, api.Config{}, env.Logger).Handler())
	t.Cleanup(srv.Close)
	return &valService{svc: svc, db: db, srv: srv, jwt: res.Token,
		admin: app.Principal{UserID: res.UserID, Username: "admin", Role: app.RoleAdmin, Method: "jwt"}}
}

// get fetches path over HTTP as the admin and returns the body.
func (v *valService) get(t *testing.T, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", v.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+v.jwt)
	res, err := v.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	return string(b)
}

func (v *valService) stored(t *testing.T, id string) app.EgressIP {
	t.Helper()
	var e app.EgressIP
	if err := v.db.View(context.Background(), func(tx app.Tx) error {
		var err error
		e, err = tx.GetEgress(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

func valStr(s string) *string { return &s }

// TestValidateMaskingViaAPI: secrets are stored, and never shown: not by the service's views,
// not over HTTP (get and list).
func TestValidateMaskingViaAPI(t *testing.T) {
	v := newValService(t)
	ctx := context.Background()
	const id = "b831381d-6324-4d53-ad4f-8cda48b30811"
	psk, priv := fuzzKey(100), fuzzKey(150)
	secrets := []string{psk, priv, "ss-secret-pw", "trojan-secret-pw", id, "socks-secret-pw", "upper-case-key-secret"}
	inputs := []app.EgressInput{
		{Label: valStr("wg"), IPAddress: valStr("203.0.113.10"), TunnelType: valStr("wireguard"),
			WGEndpoint: valStr("vpn.example.com:51820"), WGPublicKey: valStr(fuzzKey(1)), WGPrivateKey: valStr(priv),
			WGPresharedKey: valStr(psk), WGPeerAddress: valStr("10.0.0.2/32")},
		{Label: valStr("wg-generated"), IPAddress: valStr("203.0.113.11"), TunnelType: valStr("wireguard"),
			WGEndpoint: valStr("vpn.example.com:51820"), WGPublicKey: valStr(fuzzKey(2)), WGPeerAddress: valStr("10.0.0.3")},
	}
	for _, pc := range []string{
		`{"type":"shadowsocks","server":"s.example.com","server_port":8388,"method":"aes-256-gcm","password":"ss-secret-pw"}`,
		`{"type":"trojan","server":"t.example.com","server_port":443,"password":"trojan-secret-pw"}`,
		`{"type":"vless","server":"v.example.com","server_port":443,"uuid":"` + id + `"}`,
		`{"type":"socks","server":"192.0.2.50","server_port":1080,"username":"user","password":"socks-secret-pw"}`,
		// Keys are decoded in any case: "Password" is the password, and masked like it.
		`{"type":"trojan","server":"t.example.com","server_port":443,"Password":"upper-case-key-secret"}`,
	} {
		raw := json.RawMessage(pc)
		inputs = append(inputs, app.EgressInput{Label: valStr("px"), IPAddress: valStr("192.0.2.1"), TunnelType: valStr("proxy"), ProxyConfig: &raw})
	}
	var ids []string
	for _, in := range inputs {
		ev, err := v.svc.CreateEgress(ctx, v.admin, in)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
		j, _ := json.Marshal(ev)
		for _, s := range secrets {
			if strings.Contains(string(j), s) {
				t.Fatalf("create view leaks %q: %s", s, j)
			}
		}
		if ev.WGPrivateKey != "" && ev.WGPrivateKey != "********" || ev.WGPresharedKey != "" && ev.WGPresharedKey != "********" {
			t.Fatalf("wg secrets shown: %+v", ev)
		}
		if ev.TunnelType == "wireguard" && ev.WGPrivateKey != "********" {
			t.Fatalf("private key not masked (a generated one is a secret too): %+v", ev)
		}
	}
	// The secrets are stored as given.
	if e := v.stored(t, ids[0]); e.WGPrivateKey != priv || e.WGPresharedKey != psk {
		t.Fatalf("stored %+v", e)
	}
	if e := v.stored(t, ids[1]); app.ValidateWGKey("k", e.WGPrivateKey) != nil {
		t.Fatalf("generated key %q", e.WGPrivateKey)
	}
	if e := v.stored(t, ids[2]); !strings.Contains(string(e.ProxyConfig), "ss-secret-pw") {
		t.Fatalf("stored proxy config %s", e.ProxyConfig)
	}
	bodies := []string{v.get(t, "/v1/admin/egress-ips")}
	for _, id := range ids {
		bodies = append(bodies, v.get(t, "/v1/admin/egress-ips/"+id))
	}
	views, err := v.svc.ListEgress(ctx, v.admin)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(views)
	bodies = append(bodies, string(j))
	for _, b := range bodies {
		for _, s := range secrets {
			if strings.Contains(b, s) {
				t.Fatalf("view leaks %q: %s", s, b)
			}
		}
		if !strings.Contains(b, `"********"`) {
			t.Fatalf("nothing masked in %s", b)
		}
	}
}

// TestValidateMaskedSecretsSentBack: a client that GETs an egress IP, edits one field and PUTs
// the record back sends the masks; the stored secrets must survive that round trip.
func TestValidateMaskedSecretsSentBack(t *testing.T) {
	v := newValService(t)
	ctx := context.Background()
	psk := fuzzKey(100)
	wg, err := v.svc.CreateEgress(ctx, v.admin, app.EgressInput{Label: valStr("wg"), IPAddress: valStr("203.0.113.10"),
		TunnelType: valStr("wireguard"), WGEndpoint: valStr("vpn.example.com:51820"), WGPublicKey: valStr(fuzzKey(1)),
		WGPresharedKey: valStr(psk), WGPeerAddress: valStr("10.0.0.2/32")})
	if err != nil {
		t.Fatal(err)
	}
	priv := v.stored(t, wg.ID).WGPrivateKey
	if _, err := v.svc.UpdateEgress(ctx, v.admin, wg.ID, app.EgressInput{Label: valStr("wg-renamed"),
		WGPrivateKey: valStr(wg.WGPrivateKey), WGPresharedKey: valStr(wg.WGPresharedKey)}); err != nil {
		t.Fatal(err)
	}
	if e := v.stored(t, wg.ID); e.WGPrivateKey != priv || e.WGPresharedKey != psk || e.Label != "wg-renamed" {
		t.Fatalf("wireguard secrets lost: %+v", e)
	}

	for _, c := range []struct{ cfg, secret string }{
		{`{"type":"trojan","server":"t.example.com","server_port":443,"password":"trojan-secret-pw"}`, "trojan-secret-pw"},
		{`{"type":"vmess","server":"v.example.com","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811"}`, "b831381d-6324-4d53-ad4f-8cda48b30811"},
		{`{"type":"socks","server":"s.example.com","server_port":1080,"username":"u","password":"socks-secret-pw"}`, "socks-secret-pw"},
	} {
		raw := json.RawMessage(c.cfg)
		px, err := v.svc.CreateEgress(ctx, v.admin, app.EgressInput{Label: valStr("px"), IPAddress: valStr("192.0.2.1"),
			TunnelType: valStr("proxy"), ProxyConfig: &raw})
		if err != nil {
			t.Fatal(err)
		}
		// Send back the view's proxy_config (masked) with the port changed.
		var shown map[string]any
		if err := json.Unmarshal(px.ProxyConfig, &shown); err != nil {
			t.Fatal(err)
		}
		shown["server_port"] = 8443
		back, _ := json.Marshal(shown)
		rb := json.RawMessage(back)
		out, err := v.svc.UpdateEgress(ctx, v.admin, px.ID, app.EgressInput{ProxyConfig: &rb})
		if err != nil {
			t.Fatalf("sending the masked config back: %v", err)
		}
		stored := v.stored(t, px.ID)
		if !strings.Contains(string(stored.ProxyConfig), c.secret) || !strings.Contains(string(stored.ProxyConfig), "8443") {
			t.Fatalf("secret lost on round trip: stored %s", stored.ProxyConfig)
		}
		if strings.Contains(string(out.ProxyConfig), c.secret) {
			t.Fatalf("update view leaks the secret: %s", out.ProxyConfig)
		}
		// A new secret replaces the old one.
		shown["password"], shown["uuid"] = "a-new-secret", "0e7a4c3f-3c1b-4b8e-9d1e-6f2a1b3c4d5e"
		if c.secret == "b831381d-6324-4d53-ad4f-8cda48b30811" {
			delete(shown, "password")
		} else {
			delete(shown, "uuid")
		}
		back, _ = json.Marshal(shown)
		rb = json.RawMessage(back)
		if _, err := v.svc.UpdateEgress(ctx, v.admin, px.ID, app.EgressInput{ProxyConfig: &rb}); err != nil {
			t.Fatal(err)
		}
		if s := string(v.stored(t, px.ID).ProxyConfig); strings.Contains(s, c.secret) || strings.Contains(s, "********") {
			t.Fatalf("new secret not stored: %s", s)
		}
	}
}
