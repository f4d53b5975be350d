package main

import (
	"context"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// kind is one tunnel row: how the lab runs the provider's end of it, and so the egress IP
// record a host bound to it has. A new tunnel type is one more line here.
type kind struct {
	Name   string // row label and -kinds name
	Detail string // what exactly is measured
	start  func(*lab, context.Context) (app.EgressIP, error)
}

const benchUUID = "b831381d-6324-4d53-ad4f-8cda48b30811"

var kinds = []kind{
	{"wireguard", "wireguard-go in the server ↔ wireguard-go peer, MTU 1420", (*lab).startWireGuard},
	{"socks", "SOCKS5, user/password", proxyKind(map[string]any{"type": "socks", "username": "u", "password": "p"}, false)},
	{"http", "HTTP CONNECT, user/password", proxyKind(map[string]any{"type": "http", "username": "u", "password": "p"}, false)},
	{"shadowsocks", "aes-256-gcm", proxyKind(map[string]any{"type": "shadowsocks", "method": "aes-256-gcm", "password": "bench-password"}, false)},
	{"vmess", "security aes-128-gcm, no TLS", proxyKind(map[string]any{"type": "vmess", "uuid": benchUUID, "security": "aes-128-gcm"}, false)},
	{"vless", "TLS (self-signed CA pinned in tls.certificate)", proxyKind(map[string]any{"type": "vless", "uuid": benchUUID}, true)},
	{"trojan", "TLS (self-signed CA pinned in tls.certificate)", proxyKind(map[string]any{"type": "trojan", "password": "bench-password"}, true)},
}
