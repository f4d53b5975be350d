// Package tunnel is the egress room: it gives each host's container one way out, a tunnel
// device in the container's network namespace whose far end is outside it, and nothing
// else. For a WireGuard egress that is a kernel WireGuard link whose UDP socket stays in
// the server's namespace or, without kernel WireGuard, a TUN driven by wireguard-go in the
// server process; for a proxy egress a TUN whose TCP and UDP a user-space (gVisor) network
// stack ends and carries through the proxy outbound of package outbound (socks, http,
// shadowsocks, vmess, vless, trojan).
// It checks egress IPs from the server (Manager.Test: on a user-space WireGuard stack or
// through the proxy outbound) and from inside a container (Manager.CheckHost).
// CheckService is the public endpoint those checks talk to.
//
// Files: manager.go (Manager, its configuration and Status), attach.go (Attach, Detach
// and what every attachment shares: the container's namespace checked and prepared),
// wireguard.go with kernelwg.go and wgconfig.go (WireGuard tunnels), proxy.go (proxy
// tunnels), container.go (the tunnel device's addresses and routes, the container's
// resolv.conf), check.go, proxy_check.go and hostcheck.go (the three checks), netns.go
// (devices and binds in another namespace), validate.go and traffic.go.
package tunnel
