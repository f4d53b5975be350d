package app_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
)

// fuzzWantInvalid checks that err is a 422-kind *app.Error naming a field (with fieldPrefix).
func fuzzWantInvalid(t *testing.T, err error, fieldPrefix string) {
	t.Helper()
	var ae *app.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v is not an *app.Error", err, err)
	}
	if ae.Kind != app.KindInvalid || ae.Field == "" || !strings.HasPrefix(ae.Field, fieldPrefix) || ae.Message == "" {
		t.Fatalf("error %#v: want KindInvalid with a field starting %q", ae, fieldPrefix)
	}
	if string(ae.Code) != "invalid_"+strings.NewReplacer(".", "_", "[", "_", "]", "_").Replace(ae.Field) {
		t.Fatalf("code %q does not match field %q", ae.Code, ae.Field)
	}
}

func fuzzHasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func fuzzKey(b byte) string {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func FuzzValidateEgress(f *testing.F) {
	k1, k2, k3 := fuzzKey(1), fuzzKey(50), fuzzKey(100)
	// label, ip, tunnel, provider, endpoint, pub, priv, psk, allowed, dns, peer, proxy
	f.Add("hk-wg-01", "203.0.113.10", "wireguard", "manual", "vpn-provider.example.com:51820", "PeerPublicKeyBase64", "", "PresharedKeyBase64", "0.0.0.0/0", "1.1.1.1", "10.0.0.2/32", "")
	f.Add("hk-wg-01", "203.0.113.10", "wireguard", "manual", "vpn-provider.example.com:51820", k1, k2, k3, "0.0.0.0/0", "1.1.1.1", "10.0.0.2/32", "")
	f.Add("wg v6", "2001:db8::1", "wireguard", "", "[2001:db8::2]:51820", k1, "", "", "10.0.0.0/8,::/0", "2606:4700:4700::1111", "10.0.0.2, fd00::2", "")
	f.Add("wg zone", "fe80::1%eth0", "wireguard", "", "[fe80::1%\nPostUp = x]:51820", k1, "", "", "", "fe80::1%a", "fe80::2%b", "")
	f.Add("wg nl", "203.0.113.10", "wireguard", "", "vpn.example.com:51820", k1[:20]+"\n"+k1[20:], "", "", "", "", "10.0.0.2", "")
	f.Add("jp-ss-01", "198.51.100.5", "proxy", "manual", "", "", "", "", "", "", "", `{"type":"shadowsocks","server":"198.51.100.5","server_port":8388,"method":"aes-256-gcm","password":"your-password"}`)
	f.Add("us-vmess-01", "203.0.113.20", "proxy", "manual", "", "", "", "", "", "", "", `{"type":"vmess","server":"203.0.113.20","server_port":443,"uuid":"your-uuid","security":"auto","alter_id":0}`)
	f.Add("eu-socks-01", "192.0.2.50", "proxy", "manual", "", "", "", "", "", "", "", `{"type":"socks","server":"192.0.2.50","server_port":1080,"username":"user","password":"pass"}`)
	f.Add("sg-trojan-01", "203.0.113.30", "proxy", "manual", "", "", "", "", "", "", "", `{"type":"trojan","server":"203.0.113.30","server_port":443,"password":"your-password","tls":{"enabled":true,"server_name":"your-domain.com"}}`)
	f.Add("proxy-http-01", "192.0.2.100", "proxy", "manual", "", "", "", "", "", "", "", `{ "type" : "http", "server":"192.0.2.100","server_port":8080,"username":"user","password":"pass"}`)
	f.Add("mixed", "192.0.2.100", "proxy", "", "x:1", "", "", "", "", "", "", `{"type":"http","server":"h","server_port":1}`)
	f.Add("", "", "", "", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, label, ip, tunnel, provider, endpoint, pub, priv, psk, allowed, dns, peer, proxy string) {
		e := app.EgressIP{Label: label, IPAddress: ip, TunnelType: tunnel, Provider: provider, WGEndpoint: endpoint,
			WGPublicKey: pub, WGPrivateKey: priv, WGPresharedKey: psk, WGAllowedIPs: allowed, WGDNSServer: dns,
			WGPeerAddress: peer}
		if proxy != "" {
			e.ProxyConfig = json.RawMessage(proxy)
		}
		if err := app.ValidateEgress(&e); err != nil {
			fuzzWantInvalid(t, err, "")
			return
		}
		// Everything that can end up in a tunnel or sing-box config is a single clean line.
		for name, v := range map[string]string{"label": e.Label, "ip_address": e.IPAddress, "wg_endpoint": e.WGEndpoint,
			"wg_public_key": e.WGPublicKey, "wg_private_key": e.WGPrivateKey, "wg_preshared_key": e.WGPresharedKey,
			"wg_allowed_ips": e.WGAllowedIPs, "wg_dns_server": e.WGDNSServer, "wg_peer_address": e.WGPeerAddress} {
			if fuzzHasControl(v) {
				t.Fatalf("%s %q accepted with a control character", name, v)
			}
		}
		switch e.TunnelType {
		case app.TunnelWireGuard:
			for _, k := range []string{e.WGPublicKey, e.WGPrivateKey} {
				if len(k) != 44 {
					t.Fatalf("key %q accepted", k)
				}
			}
			if len(e.ProxyConfig) != 0 {
				t.Fatalf("wireguard with proxy_config %s", e.ProxyConfig)
			}
		case app.TunnelProxy:
			if !json.Valid(e.ProxyConfig) || e.WGEndpoint != "" || e.WGPublicKey != "" || e.WGPrivateKey != "" {
				t.Fatalf("proxy egress %+v", e)
			}
		default:
			t.Fatalf("tunnel_type %q accepted", e.TunnelType)
		}
		// Idempotent: the normalised record validates again, unchanged.
		again := e
		again.ProxyConfig = append(json.RawMessage(nil), e.ProxyConfig...)
		if err := app.ValidateEgress(&again); err != nil {
			t.Fatalf("normalised record %+v refused: %v", e, err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("not idempotent:\n%+v\n%+v", e, again)
		}
	})
}

func FuzzValidateProxyConfig(f *testing.F) {
	for _, s := range []string{
		`{"type":"shadowsocks","server":"198.51.100.5","server_port":8388,"method":"aes-256-gcm","password":"your-password"}`,
		`{"type":"vmess","server":"203.0.113.20","server_port":443,"uuid":"your-uuid","security":"auto","alter_id":0}`,
		`{"type":"vmess","server":"203.0.113.20","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","alter_id":-1}`,
		`{"type":"vless","server":"v.example.com","server_port":443,"uuid":"b831381d-6324-4d53-ad4f-8cda48b30811","flow":"xtls-rprx-vision","tls":{"enabled":true,"server_name":"v.example.com","alpn":["h2"]}}`,
		`{"type":"socks","server":"192.0.2.50","server_port":1080,"username":"user","password":"pass","version":"5"}`,
		`{"type":"trojan","server":"203.0.113.30","server_port":443,"password":"your-password","tls":{"enabled":true,"server_name":"your-domain.com"}}`,
		`{"type":"http","server":"192.0.2.100","server_port":8080,"username":"user","password":"pass"}`,
		`{"type":"shadowsocks","server":"s","server_port":1,"method":"none"}`,
		`{"type":"socks","type":"trojan","server":"s","server_port":1,"password":"p","password":""}`,
		`{"type":"http","server":"h","server_port":1,"multiplex":{"enabled":true},"detour":"x"}`,
		`{"type":"http","server":"h","server_port":1e3}`, `{"type":"http","server":"h","server_port":"1"}`,
		`{"type":"http","server":"fe80::1%eth0","server_port":1}`, `{"type":"http","server":"h","server_port":1,"tls":null}`,
		`null`, `[]`, `"x"`, `{}`, ``, `{`, ` {"type":"http","server":"h","server_port":1} `,
	} {
		f.Add(s)
	}
	types := map[string]bool{"socks": true, "http": true, "shadowsocks": true, "vmess": true, "vless": true, "trojan": true}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := app.ValidateProxyConfig(json.RawMessage(raw))
		if err != nil {
			fuzzWantInvalid(t, err, "proxy_config")
			return
		}
		var compact bytes.Buffer
		if !json.Valid(out) || json.Compact(&compact, out) != nil || !bytes.Equal(compact.Bytes(), out) {
			t.Fatalf("output %q is not compact JSON", out)
		}
		pc, err := egressconf.Parse(out)
		if err != nil || !types[pc.Type] || pc.ServerPort < 1 || pc.ServerPort > 65535 || pc.Server == "" || fuzzHasControl(pc.Server) {
			t.Fatalf("accepted %q: %+v %v", raw, pc, err)
		}
		again, err := app.ValidateProxyConfig(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, out, again, err)
		}
	})
}

func fuzzAuthorizedKey(t testing.TB, pub any, comment string) string {
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " " + comment
}

func FuzzParsePublicKey(f *testing.F) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	ed := fuzzAuthorizedKey(f, edPub, "user@host")
	for _, s := range []string{
		ed, "  " + ed + "  \n", `no-pty,command="echo hi" ` + ed, ed + "\n" + ed, strings.TrimSuffix(ed, " user@host"),
		fuzzAuthorizedKey(f, &rsa2048.PublicKey, "rsa"), fuzzAuthorizedKey(f, &rsa1024.PublicKey, "short-rsa"),
		"ssh-ed25519 AAAA... user@host", "", "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "# comment", "ssh-ed25519", strings.Repeat("A", 20000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		pk, _, err := app.ParsePublicKey(line)
		if err != nil {
			fuzzWantInvalid(t, err, "public_key")
			return
		}
		//lint:ignore SA1019 the deprecated constant names the key type that must have been refused
		if pk == nil || pk.Type() == ssh.KeyAlgoDSA {
			t.Fatalf("accepted %q as %v", line, pk)
		}
		if cp, ok := pk.(ssh.CryptoPublicKey); ok {
			if rk, ok := cp.CryptoPublicKey().(*rsa.PublicKey); ok && rk.Size()*8 < 2048 {
				t.Fatalf("accepted a %d-bit RSA key", rk.Size()*8)
			}
		}
		// What is stored (the re-marshalled key) parses again to the same key.
		stored := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
		pk2, _, err := app.ParsePublicKey(stored)
		if err != nil || ssh.FingerprintSHA256(pk2) != ssh.FingerprintSHA256(pk) {
			t.Fatalf("stored form %q of %q does not parse back: %v", stored, line, err)
		}
	})
}

func FuzzValidateUsername(f *testing.F) {
	for _, s := range []string{"newuser", "admin", "ab", "abc", strings.Repeat("a", 50), strings.Repeat("a", 51), "Bad", "a b",
		"émile", "a.b_c-d", "...", "user\n", "\nuser", "bob+x", "", "0x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ok := len(name) >= 3 && len(name) <= 50
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				ok = false
			}
		}
		err := app.ValidateUsername(name)
		if (err == nil) != ok {
			t.Fatalf("ValidateUsername(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil {
			fuzzWantInvalid(t, err, "username")
		}
	})
}

// fuzzFlip returns v with the byte at i replaced by one different from it.
func fuzzFlip(v string, i int, c byte) string {
	b := []byte(v)
	if c == b[i] {
		c ^= 0x01
	}
	b[i] = c
	return string(b)
}

func FuzzWellFormedToken(f *testing.F) {
	for _, s := range []string{app.NewTokenValue(), "ccp_", "", "ccp_" + strings.Repeat("0", 42), "CCP_" + strings.Repeat("a", 42)} {
		f.Add(s, uint(0), byte('a'))
		f.Add(s, uint(45), byte('0'))
	}
	f.Add("x", uint(10), byte(0x80))
	f.Fuzz(func(t *testing.T, s string, pos uint, c byte) {
		if app.WellFormedToken(s) {
			if len(s) != 46 || !strings.HasPrefix(s, app.TokenPrefix) {
				t.Fatalf("%q is well formed", s)
			}
			for i := len(app.TokenPrefix); i < len(s); i++ {
				if !strings.ContainsRune("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", rune(s[i])) {
					t.Fatalf("%q is well formed", s)
				}
			}
			// Flipping any one character breaks it.
			i := int(pos % uint(len(s)))
			if m := fuzzFlip(s, i, c); app.WellFormedToken(m) {
				t.Fatalf("%q and %q (byte %d changed) are both well formed", s, m, i)
			}
		}
		v := app.NewTokenValue()
		if !app.WellFormedToken(v) {
			t.Fatalf("fresh value %q is not well formed", v)
		}
		i := int(pos % uint(len(v)))
		if m := fuzzFlip(v, i, c); app.WellFormedToken(m) {
			t.Fatalf("%q is well formed after changing byte %d of %q", m, i, v)
		}
	})
}

func FuzzCreateHostInputValidate(f *testing.F) {
	// userID, image, cpu, memory, pids, which pointers are set (bits 0-2)
	f.Add("u1", "", 1.0, int64(1024), int64(512), uint8(0))
	f.Add("u1", "", 1.0, int64(1024), int64(512), uint8(7))
	f.Add("u1", "ghcr.io/acme/dev:1.2", 0.1, int64(128), int64(64), uint8(7))
	f.Add("u1", "alpine@sha256:0123", 16.0, int64(65536), int64(32768), uint8(7))
	f.Add("u1", "Bad Image", 0.09, int64(127), int64(63), uint8(7))
	f.Add("u1", "x", math.NaN(), int64(1024), int64(512), uint8(1))
	f.Add("u1", "x", math.Inf(1), int64(1024), int64(512), uint8(1))
	f.Add("", "", 1.0, int64(1024), int64(512), uint8(0))
	fields := map[string]bool{"user_id": true, "image": true, "cpu": true, "memory_mb": true, "pids": true}
	const def = "cloud-cli-proxy/managed:latest"
	f.Fuzz(func(t *testing.T, userID, image string, cpu float64, mem, pids int64, set uint8) {
		in := app.CreateHostInput{UserID: userID, Image: image}
		if set&1 != 0 {
			in.CPU = &cpu
		}
		if set&2 != 0 {
			in.MemoryMB = &mem
		}
		if set&4 != 0 {
			in.PIDs = &pids
		}
		err := in.Validate(def)
		if err != nil {
			fuzzWantInvalid(t, err, "")
			if !fields[app.AsError(err).Field] {
				t.Fatalf("field %q", app.AsError(err).Field)
			}
			return
		}
		if in.UserID == "" || in.Image == "" || len(in.Image) > 255 || fuzzHasControl(in.Image) || strings.ContainsAny(in.Image, " ;$`") {
			t.Fatalf("accepted %+v", in)
		}
		if in.CPU == nil || in.MemoryMB == nil || in.PIDs == nil {
			t.Fatalf("defaults not filled: %+v", in)
		}
		if c := *in.CPU; math.IsNaN(c) || c < app.MinCPU || c > app.MaxCPU {
			t.Fatalf("cpu %v accepted", c)
		}
		if m := *in.MemoryMB; m < app.MinMemoryMB || m > app.MaxMemoryMB {
			t.Fatalf("memory %d accepted", m)
		}
		if p := *in.PIDs; p < app.MinPIDs || p > app.MaxPIDs {
			t.Fatalf("pids %d accepted", p)
		}
		before := in
		cpu2, mem2, pids2 := *in.CPU, *in.MemoryMB, *in.PIDs
		if err := in.Validate(def); err != nil || in.Image != before.Image || *in.CPU != cpu2 || *in.MemoryMB != mem2 || *in.PIDs != pids2 {
			t.Fatalf("second Validate changed %+v: %v", before, err)
		}
	})
}
