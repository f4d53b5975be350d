package outbound

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
	M "github.com/sagernet/sing/common/metadata"
)

// echo serves TCP (with DNS-over-TCP framing kept intact: it echoes bytes) and UDP echo on
// one loopback port, so it answers ExchangeDNS with the query itself.
func echo(t *testing.T) netip.AddrPort {
	t.Helper()
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			ln.Close()
			if try < 10 {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close(); pc.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
		go func() {
			b := make([]byte, 65535)
			for {
				n, addr, err := pc.ReadFrom(b)
				if err != nil {
					return
				}
				pc.WriteTo(b[:n], addr)
			}
		}()
		return netip.MustParseAddrPort(ln.Addr().String())
	}
}

func rawConfig(t *testing.T, m map[string]any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve runs Serve for cfg on loopback (with a UDP socket on the same port for shadowsocks)
// and returns the config pointed at it and a stop function that waits for Serve.
func serve(t *testing.T, cfg map[string]any, serverTLS ServerConfig) (json.RawMessage, func()) {
	t.Helper()
	var (
		ln net.Listener
		pc net.PacketConn
	)
	for try := 0; ; try++ {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if cfg["type"] != "shadowsocks" {
			break
		}
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err == nil {
			break
		}
		ln.Close()
		if try > 10 {
			t.Fatal(err)
		}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	cfg["server"], cfg["server_port"] = "127.0.0.1", port
	raw := rawConfig(t, cfg)
	sc := serverTLS
	sc.UDP = pc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, raw, sc) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return raw, stop
}

func roundTrip(c net.Conn, msg []byte) ([]byte, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return got, err
}

type protoCase struct {
	name string
	cfg  map[string]any
	tls  bool
	udp  bool
}

func ss2022Key() string {
	k := make([]byte, 16)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

func protoCases() []protoCase {
	const id = "b831381d-6324-4d53-ad4f-8cda48b30811"
	return []protoCase{
		{"socks", map[string]any{"type": "socks", "username": "u", "password": "p"}, false, true},
		{"socks-tcp-only", map[string]any{"type": "socks", "network": "tcp"}, false, false},
		{"http", map[string]any{"type": "http", "username": "u", "password": "p"}, false, false},
		{"http-tls", map[string]any{"type": "http"}, true, false},
		{"shadowsocks-aead", map[string]any{"type": "shadowsocks", "method": "aes-128-gcm", "password": "pw"}, false, true},
		{"shadowsocks-2022", map[string]any{"type": "shadowsocks", "method": "2022-blake3-aes-128-gcm", "password": ss2022Key()}, false, true},
		{"vmess", map[string]any{"type": "vmess", "uuid": id, "security": "aes-128-gcm"}, false, true},
		{"vmess-xudp-tls", map[string]any{"type": "vmess", "uuid": id, "packet_encoding": "xudp", "global_padding": true, "authenticated_length": true}, true, true},
		{"vless-tls", map[string]any{"type": "vless", "uuid": id}, true, true},
		{"vless-plain-udp", map[string]any{"type": "vless", "uuid": id, "packet_encoding": ""}, false, true},
		{"trojan-tls", map[string]any{"type": "trojan", "password": "secret"}, true, true},
	}
}

// Every protocol against its own server on loopback: TCP through it, UDP where carried,
// DNS (over UDP or TCP), and the server's shutdown cutting everything.
func TestProtocolsLoopback(t *testing.T) {
	target := echo(t)
	serverTLS, caPEM, err := SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range protoCases() {
		t.Run(tc.name, func(t *testing.T) {
			var sc ServerConfig
			if tc.tls {
				tc.cfg["tls"] = map[string]any{"enabled": true, "certificate": string(caPEM)}
				sc.TLS = serverTLS
			}
			raw, stop := serve(t, tc.cfg, sc)
			d, err := New(raw, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if d.UDP() != tc.udp {
				t.Fatalf("UDP() = %v, want %v", d.UDP(), tc.udp)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			c, err := d.DialContext(ctx, "tcp", target.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := bytes.Repeat([]byte("tcp through "+tc.name+"\n"), 5000)
			if got, err := roundTrip(c, msg); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("tcp echo: %v", err)
			}
			// A half-close reaches the far end, whose answer still comes back.
			h, err := d.DialContext(ctx, "tcp", target.String())
			if err != nil {
				t.Fatal(err)
			}
			h.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := h.Write([]byte("last words")); err != nil {
				t.Fatal(err)
			}
			if !CloseWrite(h) {
				t.Fatal("CloseWrite: the connection cannot half-close")
			}
			if rest, err := io.ReadAll(h); err != nil || string(rest) != "last words" {
				t.Fatalf("after a half-close: %q, %v", rest, err)
			}
			h.Close()

			u, err := d.DialContext(ctx, "udp", target.String())
			if !tc.udp {
				if !errors.Is(err, ErrNoUDP) {
					t.Fatalf("udp without UDP: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				defer u.Close()
				for i := range 3 {
					dg := []byte("datagram " + strconv.Itoa(i))
					u.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := u.Write(dg); err != nil {
						t.Fatal(err)
					}
					b := make([]byte, 2048)
					n, err := u.Read(b)
					if err != nil || !bytes.Equal(b[:n], dg) {
						t.Fatalf("udp echo %d: %q, %v", i, b[:n], err)
					}
				}
			}

			q := make([]byte, 30)
			rand.Read(q)
			ans, err := ExchangeDNS(ctx, d, target, q)
			if err != nil || !bytes.Equal(ans, q) {
				t.Fatalf("dns exchange: %x, %v", ans, err)
			}

			stop()
			if _, err := roundTrip(c, []byte("after stop")); err == nil {
				t.Fatal("a connection outlived its server")
			}
			if c, err := d.DialContext(ctx, "tcp", target.String()); err == nil {
				_, err = roundTrip(c, []byte("x"))
				c.Close()
				if err == nil {
					t.Fatal("dialed through a stopped server")
				}
			}
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	target := echo(t)
	serverTLS, caPEM, err := SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		cfg         map[string]any
		tls         bool
		key, wrong  string
		failsAtDial bool
	}{
		{"socks", map[string]any{"type": "socks", "username": "u", "password": "p"}, false, "password", "nope", true},
		{"http", map[string]any{"type": "http", "username": "u", "password": "p"}, false, "password", "nope", true},
		{"shadowsocks", map[string]any{"type": "shadowsocks", "method": "aes-256-gcm", "password": "p"}, false, "password", "nope", false},
		{"vmess", map[string]any{"type": "vmess", "uuid": "b831381d-6324-4d53-ad4f-8cda48b30811"}, false, "uuid", "11111111-6324-4d53-ad4f-8cda48b30811", false},
		{"vless", map[string]any{"type": "vless", "uuid": "b831381d-6324-4d53-ad4f-8cda48b30811"}, true, "uuid", "11111111-6324-4d53-ad4f-8cda48b30811", false},
		{"trojan", map[string]any{"type": "trojan", "password": "p"}, true, "password", "nope", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sc ServerConfig
			if tc.tls {
				tc.cfg["tls"] = map[string]any{"enabled": true, "certificate": string(caPEM)}
				sc.TLS = serverTLS
			}
			raw, _ := serve(t, tc.cfg, sc)
			var m map[string]any
			json.Unmarshal(raw, &m)
			m[tc.key] = tc.wrong
			d, err := New(rawConfig(t, m), Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", target.String())
			if tc.failsAtDial {
				if err == nil {
					c.Close()
					t.Fatal("dial with wrong credentials succeeded")
				}
				return
			}
			if err != nil {
				return // refused early: fine too
			}
			defer c.Close()
			if _, err := roundTrip(c, []byte("hello")); err == nil {
				t.Fatal("data went through with wrong credentials")
			}
		})
	}
}

func TestTLSVerification(t *testing.T) {
	target := echo(t)
	serverTLS, caPEM, err := SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, otherCA, err := SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := serve(t, map[string]any{"type": "trojan", "password": "p", "tls": map[string]any{"enabled": true, "certificate": string(caPEM)}},
		ServerConfig{TLS: serverTLS})
	var m map[string]any
	json.Unmarshal(raw, &m)
	dial := func(tlsBlock map[string]any) error {
		m["tls"] = tlsBlock
		d, err := New(rawConfig(t, m), Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", target.String())
		if err == nil {
			_, err = roundTrip(c, []byte("x"))
			c.Close()
		}
		return err
	}
	if err := dial(map[string]any{"enabled": true, "certificate": string(otherCA)}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted CA: %v", err)
	}
	if err := dial(map[string]any{"enabled": true, "certificate": string(caPEM), "server_name": "proxy.example"}); err == nil {
		t.Error("wrong server_name accepted")
	}
	if err := dial(map[string]any{"enabled": true, "insecure": true}); err != nil {
		t.Errorf("insecure: %v", err)
	}
	if err := dial(map[string]any{"enabled": true, "certificate": []string{strings.TrimSpace(string(caPEM))}}); err != nil {
		t.Errorf("certificate as a list of lines: %v", err)
	}
}

func TestConfigs(t *testing.T) {
	base := map[string]any{"server": "198.51.100.1", "server_port": 443}
	with := func(kv ...any) json.RawMessage {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		return b
	}
	id := "b831381d-6324-4d53-ad4f-8cda48b30811"
	c, err := egressconf.Parse(with("type", "vless", "uuid", id))
	if err != nil || c.PacketEncoding != "xudp" || !c.UDP() {
		t.Fatalf("vless defaults: %+v, %v", c, err)
	}
	if c, err := egressconf.Parse(with("type", "shadowsocks", "method", "none", "network", "tcp")); err != nil || c.UDP() {
		t.Fatalf("network tcp: %v", err)
	}
	if c, err := egressconf.Parse(with("type", "http")); err != nil || c.UDP() {
		t.Fatalf("http: %v", err)
	}
	if c, err := egressconf.Parse(with("type", "socks", "version", "4a")); err != nil || c.UDP() {
		t.Fatalf("socks4a: %v", err)
	}
	for name, raw := range map[string]json.RawMessage{
		"transport":        with("type", "vmess", "uuid", id, "transport", map[string]any{"type": "ws"}),
		"multiplex":        with("type", "vmess", "uuid", id, "multiplex", map[string]any{"enabled": true}),
		"certificate_path": with("type", "trojan", "password", "x", "tls", map[string]any{"enabled": true, "certificate_path": "/etc/shadow"}),
		"bad certificate":  with("type", "trojan", "password", "x", "tls", map[string]any{"enabled": true, "certificate": "nope"}),
		"reality":          with("type", "vless", "uuid", id, "tls", map[string]any{"enabled": true, "reality": map[string]any{"enabled": true}}),
		"packet_encoding":  with("type", "vmess", "uuid", id, "packet_encoding", "packetaddr"),
		"socks tls":        with("type", "socks", "tls", map[string]any{"enabled": true}),
		"vision":           with("type", "vless", "uuid", id, "flow", "xtls-rprx-vision", "tls", map[string]any{"enabled": true}),
		"udp_over_tcp":     with("type", "shadowsocks", "method", "none", "udp_over_tcp", true),
		"no type":          with(),
		"bad 2022 key":     with("type", "shadowsocks", "method", "2022-blake3-aes-128-gcm", "password", "short"),
	} {
		_, err := New(raw, Options{})
		var ce *egressconf.Error
		if !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "proxy_config") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestTrojanFraming(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	key := trojanKey("pw")
	dst := netip.MustParseAddrPort("203.0.113.1:53")
	errc := make(chan error, 1)
	go func() {
		pc, err := trojanDialPacket(a, key, M.SocksaddrFromNetIP(dst))
		if err == nil {
			_, err = pc.WriteTo([]byte("query"), net.UDPAddrFromAddrPort(dst))
		}
		errc <- err
	}()
	cmd, got, r, err := trojanAccept(b, key)
	if err != nil || cmd != trojanCmdUDP || got.AddrPort() != dst {
		t.Fatalf("accept: %d %v %v", cmd, got, err)
	}
	spc := &trojanPacketConn{Conn: b, r: r}
	p := make([]byte, 100)
	n, from, err := spc.ReadFrom(p)
	if err != nil || string(p[:n]) != "query" || from.String() != dst.String() {
		t.Fatalf("server read %q from %v: %v", p[:n], from, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
