package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	goruntime "runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// DialInNetns dials addr (network "tcp", "tcp4" or "tcp6") from inside the network
// namespace of process pid, typically a container's init (app.RuntimeHost.Pid), so that
// 127.0.0.1 means the container's loopback. It needs CAP_SYS_ADMIN (root) on the engine
// host and access to /proc/<pid>/ns/net. Pass a literal IP address: names are not
// resolved inside the namespace.
//
// The dial runs on a dedicated goroutine locked to its OS thread: the thread switches to
// the target namespace, creates and connects the socket (a socket stays in the namespace
// it was created in), and switches back. If switching back fails the thread is never
// unlocked, so the Go runtime terminates it instead of reusing a thread stuck in the
// container's namespace.
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

	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			done <- result{err: fmt.Errorf("dial %s in netns: current netns: %w", addr, err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			// setns failed: the thread is still in its own namespace.
			goruntime.UnlockOSThread()
			done <- result{err: fmt.Errorf("dial %s in netns of pid %d: setns: %w", addr, pid, err)}
			return
		}
		var d net.Dialer
		conn, dialErr := d.DialContext(ctx, network, addr)
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the container's namespace: never unlock it, so it
			// dies with this goroutine. The connection itself is fine but we fail safe.
			if conn != nil {
				conn.Close()
			}
			done <- result{err: fmt.Errorf("dial %s in netns: switching back failed (thread discarded): %w", addr, err)}
			return
		}
		goruntime.UnlockOSThread()
		if dialErr != nil {
			dialErr = fmt.Errorf("dial %s in netns of pid %d: %w", addr, pid, dialErr)
		}
		done <- result{conn: conn, err: dialErr}
	}()
	r := <-done
	return r.conn, r.err
}

// ErrNotLoopback is returned by LoopbackAddr for a destination outside the container.
var ErrNotLoopback = errors.New("only 127.0.0.1, ::1 and localhost inside the workspace can be reached")

// LoopbackAddrs maps a forwarding destination host to the loopback addresses to try
// inside the container: 127.0.0.1 and ::1 as given, localhost as 127.0.0.1 then ::1.
// Anything else is ErrNotLoopback.
func LoopbackAddrs(host string) ([]string, error) {
	switch strings.ToLower(host) {
	case "127.0.0.1":
		return []string{"127.0.0.1"}, nil
	case "::1", "[::1]":
		return []string{"::1"}, nil
	case "localhost", "localhost.":
		return []string{"127.0.0.1", "::1"}, nil
	}
	return nil, ErrNotLoopback
}
