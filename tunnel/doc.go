// Package tunnel is the egress room: it gives each host's container one way out, a TUN
// device in the container's network namespace driven by the server process, and nothing
// else. For a WireGuard egress the TUN is a wireguard-go device; for a proxy egress a
// user-space (gVisor) network stack ends the TUN's TCP and UDP and carries them through
// the proxy outbound of package outbound (socks, http, shadowsocks, vmess, vless, trojan).
// It checks egress IPs from the server (Manager.Test: on a user-space WireGuard stack or
// through the proxy outbound) and from inside a container (Manager.CheckHost).
// CheckService is the public endpoint those checks talk to.
package tunnel
