package main

import (
	"context"
	"net"

	"github.com/vishvananda/netns"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
)

// inNetns runs fn on a locked OS thread switched into target.
func inNetns(target netns.NsHandle, fn func() error) error { return nsthread.Run(target, fn) }

// nsNet opens sockets inside one network namespace.
type nsNet struct{ ns netns.NsHandle }

func (n nsNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsthread.Dial(ctx, n.ns, network, addr)
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
