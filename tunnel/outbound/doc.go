// Package outbound is the proxy-protocol room of the egress tunnels: it turns an egress IP's
// proxy_config (a sing-box outbound: socks, http, shadowsocks, vmess, vless or trojan, with
// an optional tls block, checked and decoded by package egressconf) into a Dialer that
// reaches the internet through that proxy, TCP always and UDP when the protocol carries
// it, with ExchangeDNS asking a resolver through it (over UDP when carried, else over
// TCP). Serve is the other end of the same protocols, from the same libraries, so tests
// and benchmarks can run a provider's proxy server.
//
// The protocols come from sagernet's libraries (sing for socks and http, sing-shadowsocks,
// sing-vmess with its vless package); trojan, which has no library of its own, is the small
// implementation in trojan.go over crypto/tls.
package outbound
