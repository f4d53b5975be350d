package runtime

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netns"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
)

// DialInNetns dials addr (network "tcp", "tcp4" or "tcp6") from inside the network
// namespace of process pid, typically a container's init (app.RuntimeHost.Pid), so that
// 127.0.0.1 means the container's loopback. It needs CAP_SYS_ADMIN (root) on the engine
// host and access to /proc/<pid>/ns/net. Pass a literal IP address: names are not
// resolved inside the namespace.
//
// The socket is created and connected by a thread switched into the target namespace
// (nsthread.Dial); a socket stays in the namespace it was created in.
func DialInNetns(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("dial %s in netns: no process (pid %d): is the container running?", addr, pid)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial in netns: unsupported network %q", network)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial in netns: %w", err)
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("dial %s in netns: host must be a literal IP address", addr)
	}
	target, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, fmt.Errorf("dial %s in netns of pid %d: %w", addr, pid, err)
	}
	defer target.Close()
	conn, err := nsthread.Dial(ctx, target, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s in netns of pid %d: %w", addr, pid, err)
	}
	return conn, nil
}

// DialNetns implements app.Runtime with DialInNetns.
func (d *Docker) DialNetns(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	return DialInNetns(ctx, pid, network, addr)
}
