package main

import (
	"context"
	"fmt"
	"net"
	goruntime "runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs fn on a locked OS thread switched into target, then switches the thread back.
// Sockets fn opens stay in target. If switching back fails the thread stays locked, so the
// Go runtime ends it with its goroutine rather than reusing a thread in the wrong namespace.
// (The same pattern as the tunnel package's own, which is not exported.)
func inNetns(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("switching back from a lab namespace failed (thread discarded): %w", err)
			return
		}
		goruntime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// nsNet opens sockets inside one network namespace.
type nsNet struct{ ns netns.NsHandle }

func (n nsNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var dialErr error
	err := inNetns(n.ns, func() error {
		var d net.Dialer
		c, dialErr = d.DialContext(ctx, network, addr)
		return nil
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return c, dialErr
}

func (n nsNet) listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	var lerr error
	if err := inNetns(n.ns, func() error { ln, lerr = net.Listen(network, addr); return nil }); err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	return ln, lerr
}

func (n nsNet) listenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	var lerr error
	if err := inNetns(n.ns, func() error {
		var lc net.ListenConfig
		pc, lerr = lc.ListenPacket(ctx, network, addr)
		return nil
	}); err != nil {
		if pc != nil {
			pc.Close()
		}
		return nil, err
	}
	return pc, lerr
}
