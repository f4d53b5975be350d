package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/miekg/dns"
)

func TestParseWGUAPI(t *testing.T) {
	prov, cli := newKey(t), newKey(t)
	e := app.EgressIP{IPAddress: "203.0.113.10", TunnelType: app.TunnelWireGuard, WGEndpoint: "198.51.100.7:51820",
		WGPublicKey: prov.pub, WGPrivateKey: cli.priv, WGPresharedKey: prov.priv,
		WGAllowedIPs: "0.0.0.0/0, ::/0", WGPeerAddress: "10.66.0.2/32, fd00::2", WGDNSServer: "203.0.113.1"}
	c, err := parseWG(e)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.endpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := "private_key=" + b64hex(t, cli.priv) + "\nreplace_peers=true\npublic_key=" + b64hex(t, prov.pub) +
		"\npreshared_key=" + b64hex(t, prov.priv) + "\nendpoint=198.51.100.7:51820\npersistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n"
	if got := c.uapi(ep); got != want {
		t.Fatalf("uapi:\n%s\nwant:\n%s", got, want)
	}
	// Kernel WireGuard gets the same configuration through wgctrl.
	kc, err := c.kernelConfig(ep)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%x\nreplace_peers=%t\n", kc.PrivateKey[:], kc.ReplacePeers)
	for _, p := range kc.Peers {
		fmt.Fprintf(&b, "public_key=%x\npreshared_key=%x\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=%t\n",
			p.PublicKey[:], p.PresharedKey[:], p.Endpoint, int(p.PersistentKeepaliveInterval.Seconds()), p.ReplaceAllowedIPs)
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a.String())
		}
	}
	if got := b.String(); got != want {
		t.Fatalf("kernel config:\n%s\nwant:\n%s", got, want)
	}
	if !c.has(false) || !c.has(true) || c.addrs[1].String() != "fd00::2/128" {
		t.Fatalf("addrs %v", c.addrs)
	}
}

func TestParseWGRejects(t *testing.T) {
	good := app.EgressIP{IPAddress: "203.0.113.10", TunnelType: app.TunnelWireGuard, WGEndpoint: "198.51.100.7:51820",
		WGPublicKey: newKey(t).pub, WGPrivateKey: newKey(t).priv, WGPeerAddress: "10.66.0.2/32"}
	for name, mut := range map[string]func(*app.EgressIP){
		"short key":       func(e *app.EgressIP) { e.WGPublicKey = "AAAA" },
		"newline in key":  func(e *app.EgressIP) { e.WGPrivateKey += "\nlisten_port=1" },
		"no private key":  func(e *app.EgressIP) { e.WGPrivateKey = "" },
		"endpoint inject": func(e *app.EgressIP) { e.WGEndpoint = "1.2.3.4:5\nendpoint=6.6.6.6:1" },
		"allowed inject":  func(e *app.EgressIP) { e.WGAllowedIPs = "0.0.0.0/0\nallowed_ip=::/0" },
		"no peer address": func(e *app.EgressIP) { e.WGPeerAddress = " " },
		"bad dns":         func(e *app.EgressIP) { e.WGDNSServer = "dns.example" },
		"bad exit ip":     func(e *app.EgressIP) { e.IPAddress = "x" },
	} {
		e := good
		mut(&e)
		_, err := parseWG(e)
		var ae *app.Error
		if !errors.As(err, &ae) || ae.Kind != app.KindInvalid {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := parseWG(good); err != nil {
		t.Fatal(err)
	}
}

// The check service on loopback: what-is-my-IP, zone answers, resolver log.
func TestCheckServiceLoopback(t *testing.T) {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &CheckService{Zone: "Check.Test."}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, hl, pc, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + hl.Addr().String()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	if got := get("/"); got != "127.0.0.1" {
		t.Fatalf("GET / = %q", got)
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	q := func(name string, qt uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		r, _, err := c.Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := q("Abc.check.test.", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" || !r.Authoritative {
		t.Fatalf("A answer %v", r)
	}
	if r := q("other.example.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("out of zone: %v", r)
	}
	if r := q("x.check.test.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("AAAA: %v", r)
	}
	var got []string
	if err := json.Unmarshal([]byte(get("/dns-log?name=abc.CHECK.test")), &got); err != nil || len(got) != 1 || got[0] != "127.0.0.1" {
		t.Fatalf("dns-log = %v, %v", got, err)
	}
	if body := get("/dns-log?name=never.check.test"); body != "[]" {
		t.Fatalf("unknown name log = %s", body)
	}
}
