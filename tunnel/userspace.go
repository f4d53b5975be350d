package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// userTUN is a TUN device backed by a user-space (gVisor) network stack, for checks run
// in the server without a container. It follows golang.zx2c4.com/wireguard/tun/netstack
// (MIT), whose Close closes the packet channel while the stack may still be sending on it
// (a data race that can panic the server); here Close signals instead and nothing is ever
// sent on a closed channel.
type userTUN struct {
	ep       *channel.Endpoint
	stack    *stack.Stack
	events   chan tun.Event
	incoming chan *buffer.View
	done     chan struct{}
	once     sync.Once
	mtu      int
}

func newUserTUN(local []netip.Addr, mtu int) (*userTUN, error) {
	t := &userTUN{
		ep: channel.New(1024, uint32(mtu), ""),
		stack: stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol6, icmp.NewProtocol4},
			HandleLocal:        true,
		}),
		events:   make(chan tun.Event, 10),
		incoming: make(chan *buffer.View),
		done:     make(chan struct{}),
		mtu:      mtu,
	}
	t.ep.AddNotify(t)
	if err := t.stack.CreateNIC(1, t.ep); err != nil {
		return nil, fmt.Errorf("user-space stack: %v", err)
	}
	var has4, has6 bool
	for _, a := range local {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if err := t.stack.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			return nil, fmt.Errorf("user-space stack address %s: %v", a, err)
		}
		has4, has6 = has4 || a.Is4(), has6 || a.Is6()
	}
	if has4 {
		t.stack.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: 1})
	}
	if has6 {
		t.stack.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: 1})
	}
	t.events <- tun.EventUp
	return t, nil
}

func (t *userTUN) Name() (string, error)    { return "user", nil }
func (t *userTUN) File() *os.File           { return nil }
func (t *userTUN) Events() <-chan tun.Event { return t.events }
func (t *userTUN) MTU() (int, error)        { return t.mtu, nil }
func (t *userTUN) BatchSize() int           { return 1 }

func (t *userTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case view := <-t.incoming:
		n, err := view.Read(bufs[0][offset:])
		view.Release()
		if err != nil {
			return 0, err
		}
		sizes[0] = n
		return 1, nil
	case <-t.done:
		return 0, os.ErrClosed
	}
}

func (t *userTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		p := b[offset:]
		if len(p) == 0 {
			continue
		}
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		switch p[0] >> 4 {
		case 4:
			t.ep.InjectInbound(header.IPv4ProtocolNumber, pkb)
		case 6:
			t.ep.InjectInbound(header.IPv6ProtocolNumber, pkb)
		default:
			pkb.DecRef()
			return 0, syscall.EAFNOSUPPORT
		}
		pkb.DecRef()
	}
	return len(bufs), nil
}

// WriteNotify is called by the stack when it has a packet to send into the tunnel.
func (t *userTUN) WriteNotify() {
	pkt := t.ep.Read()
	if pkt.IsNil() {
		return
	}
	view := pkt.ToView()
	pkt.DecRef()
	select {
	case t.incoming <- view:
	case <-t.done:
		view.Release()
	}
}

func (t *userTUN) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.stack.RemoveNIC(1)
		t.ep.Close()
		close(t.events) // only this goroutine ever sends on events, before Close
	})
	return nil
}

// DialContext dials "tcp" or "udp" to a literal ip:port through the user-space stack.
func (t *userTUN) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("dial %s through the tunnel: host must be an IP address", address)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port", address)
	}
	a = a.Unmap()
	fa := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: uint16(p)}
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		return gonet.DialContextTCP(ctx, t.stack, fa, proto)
	case "udp", "udp4", "udp6":
		return gonet.DialUDP(t.stack, nil, &fa, proto)
	}
	return nil, errors.New("dial through the tunnel: unsupported network " + network)
}
