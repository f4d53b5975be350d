// Package tunnel is the egress room: it gives each host's container a WireGuard tunnel
// run in the server process (wireguard-go) whose TUN device lives in the container's
// network namespace and carries all of its traffic, and it checks egress IPs from the
// server on a user-space network stack (Manager.Test). CheckService is the public
// endpoint those checks talk to.
package tunnel
