package egressconf

import (
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The schema is shared by app and tunnel/outbound, so it must not depend on either.
func TestImportsNothingOfTheProject(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, "github.com/cloud-cli-proxy/") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

func TestParse(t *testing.T) {
	const id = "b831381d-6324-4d53-ad4f-8cda48b30811"
	o, err := Parse(json.RawMessage(`{"type":"vless","server":"p.example","server_port":443,"uuid":"` + id + `","tls":{"enabled":true}}`))
	if err != nil || o.PacketEncoding != "xudp" || !o.UDP() || !o.TCP() || !o.TLSEnabled() || o.ServerAddr() != "p.example:443" {
		t.Fatalf("vless: %+v %v", o, err)
	}
	if o, err := Parse(json.RawMessage(`{"type":"socks","server":"2001:db8::1","server_port":1080,"version":"4a"}`)); err != nil || o.UDP() || o.ServerAddr() != "[2001:db8::1]:1080" {
		t.Fatalf("socks4a: %+v %v", o, err)
	}
	for raw, field := range map[string]string{
		`{"type":"http","server":"h","server_port":1,"transport":{"type":"ws"}}`:                                 "proxy_config.transport",
		`{"type":"http","server":"h"}`:                                                                           "proxy_config.server_port",
		`{"type":"http","server":"fe80::1%eth0","server_port":1}`:                                                "proxy_config.server",
		`{"type":"trojan","server":"h","server_port":1,"password":"p","tls":{"enabled":true,"certificate":"x"}}`: "proxy_config.tls.certificate",
		`[]`: "proxy_config",
	} {
		_, err := Parse(json.RawMessage(raw))
		var ce *Error
		if !errors.As(err, &ce) || ce.Field != field || !strings.Contains(ce.Message, field) {
			t.Errorf("%s: err %v, want one on %s", raw, err, field)
		}
	}
	out, err := Validate(json.RawMessage(" {\"type\": \"http\", \"server\": \"h\", \"server_port\": 1, \"x\": [1, 2]} "))
	if err != nil || string(out) != `{"type":"http","server":"h","server_port":1,"x":[1,2]}` {
		t.Fatalf("validate: %s %v", out, err)
	}
}
