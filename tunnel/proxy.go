package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
	"github.com/miekg/dns"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ProxyInterfaceName is the name of a proxy egress's TUN device inside a container.
const ProxyInterfaceName = "tun0"

// ProxyMTU is the MTU of proxy TUN devices. Their packets never leave the machine (the
// user-space stack of this process ends them), so a large MTU only saves work.
const ProxyMTU = 9000

// DefaultProxyDNSServer is the resolver of containers behind a proxy egress unless
// Config.ProxyDNSServer says otherwise.
var DefaultProxyDNSServer = netip.MustParseAddr("1.1.1.1")

// proxyTUNAddr is the container's address on a proxy TUN: in 198.18.0.0/15, which is for
// benchmarking and never routed on the internet, so it shadows no destination.
var proxyTUNAddr = netip.MustParsePrefix("198.18.0.1/32")

const (
	// proxyDialTimeout bounds reaching a destination through the proxy; the container's
	// SYN waits for it.
	proxyDialTimeout = 15 * time.Second
	// proxyUDPIdle ends a relayed UDP flow nothing went through for that long.
	proxyUDPIdle = 60 * time.Second
	// proxyDNSIdle ends a container's DNS flow (one source port) idle for that long.
	proxyDNSIdle = 20 * time.Second
	// proxyDNSTimeout bounds answering one query through the proxy.
	proxyDNSTimeout = 10 * time.Second
	// tunOffset is the headroom wireguard-go's TUN wants in front of each packet (its
	// virtio header goes there).
	tunOffset = 16
	nicID     = 1

	// The most a container may hold at once through its proxy tunnel: relayed TCP
	// connections, relayed UDP flows (one source and destination each), flows to its
	// resolver (one source port each) and DNS queries being answered. Past them a new TCP
	// connection is reset, a new UDP flow refused (ICMP port unreachable) and a query
	// dropped (the client retries), so that one container cannot exhaust this process's
	// memory or file descriptors.
	proxyMaxTCP      = 4096
	proxyMaxUDP      = 512
	proxyMaxDNSFlows = 256
	proxyMaxDNS      = 128
)

// slots bounds how many of something are held at once; take never waits.
type slots struct {
	n   atomic.Int64
	max int64
}

// take takes a slot when one is free and reports whether it did.
func (s *slots) take() bool {
	if s.n.Add(1) > s.max {
		s.n.Add(-1)
		return false
	}
	return true
}

func (s *slots) put() { s.n.Add(-1) }

// proxyDenied are destinations a container is never carried to through its proxy: this
// network, loopback, link-local (where clouds serve instance metadata), multicast, the
// broadcast address and the tunnel's own 198.18.0.0/15. Private ranges (10/8,
// 172.16/12, 192.168/16, 100.64/10) stay allowed: as a matter of policy the container
// reaches what the proxy server's network offers, and the proxy server decides.
var proxyDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("198.18.0.0/15"),
}

// proxyNet bridges a TUN device (living in a container's namespace) to a proxy outbound
// through a gVisor network stack in this process: the stack ends every TCP connection and
// UDP flow the container opens and each is carried on by the outbound. TCP is forwarded
// (the container's SYN is answered only once the proxy has connected, with a reset when
// it cannot); UDP to the resolver on port 53 is answered through the proxy (over TCP when
// the outbound carries no UDP); other UDP goes through the outbound when it carries UDP
// and is refused (ICMP port unreachable) when it does not. Only IPv4 TCP and UDP reach the
// stack: ICMP (which the stack would answer for any address) and IPv6 are dropped.
type proxyNet struct {
	dev   tun.Device
	d     outbound.Dialer
	dns   netip.AddrPort // the container's resolver, port 53
	ep    *channel.Endpoint
	stack *stack.Stack
	log   *slog.Logger

	ctx    context.Context // ends with Close: every relay stops
	cancel context.CancelFunc
	wg     sync.WaitGroup // the TUN pumps
	once   sync.Once

	// tx counts the bytes of the container's packets that entered the tunnel (read from
	// the TUN), rx the payload that came back through the proxy: a container that keeps
	// sending while rx stands still is not hearing back.
	rx, tx   atomic.Uint64
	lastDial atomic.Int64 // unix nanoseconds of the last connection the proxy took

	// The container's share of this process (see proxyMaxTCP): set by newProxyNet, and
	// only changed (by tests) before the container sends anything.
	tcpSlots, udpSlots, dnsFlowSlots, dnsSlots slots
}

func newProxyNet(dev tun.Device, d outbound.Dialer, resolver netip.Addr, mtu int, log *slog.Logger) (*proxyNet, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	p := &proxyNet{
		dev:   dev,
		d:     d,
		dns:   netip.AddrPortFrom(resolver, 53),
		ep:    channel.New(1024, uint32(mtu), ""),
		stack: s,
		log:   log,
	}
	p.tcpSlots.max = proxyMaxTCP
	p.udpSlots.max = proxyMaxUDP
	p.dnsFlowSlots.max = proxyMaxDNSFlows
	p.dnsSlots.max = proxyMaxDNS
	p.ctx, p.cancel = context.WithCancel(context.Background())
	fail := func(what string, err tcpip.Error) (*proxyNet, error) {
		p.cancel()
		s.Close()
		return nil, fmt.Errorf("proxy stack: %s: %v", what, err)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fail("sack", err)
	}
	if err := s.CreateNIC(nicID, p.ep); err != nil {
		return fail("nic", err)
	}
	// Take every packet, whatever its destination, and answer from that destination.
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fail("promiscuous", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fail("spoofing", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})

	tcpFwd := tcp.NewForwarder(s, 0, 1024, p.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(s, p.handleUDP)
	// This handler sees only the first packet of a flow (the stack delivers the rest to
	// the flow's endpoint); udpFwd.HandlePacket calls handleUDP before it returns, which
	// gives the slot taken here to the flow or back.
	s.SetTransportProtocolHandler(udp.ProtocolNumber, func(id stack.TransportEndpointID, pkt stack.PacketBufferPtr) bool {
		dst := p.dstOf(id)
		flows := &p.udpSlots
		if dst == p.dns {
			flows = &p.dnsFlowSlots
		} else if !p.d.UDP() || p.denied(dst.Addr()) {
			return false // the stack answers ICMP port unreachable
		}
		if !flows.take() {
			p.log.Debug("proxy: udp flows at their limit", "dst", dst.String())
			return false
		}
		return udpFwd.HandlePacket(id, pkt)
	})

	p.wg.Add(2)
	go p.readTUN()
	go p.writeTUN()
	// Nothing acts on the TUN's link events, but they must be read: wireguard-go's
	// listener blocks once its channel is full and then never ends, nor closes its netlink
	// socket (which holds the container's namespace), when the device closes. The channel
	// closes when the listener ends.
	if ev := dev.Events(); ev != nil {
		go func() {
			for range ev {
			}
		}()
	}
	return p, nil
}

// Close stops the bridge: every relayed connection closes and the TUN device with it.
func (p *proxyNet) Close() {
	p.once.Do(func() {
		p.cancel()
		p.dev.Close() // ends readTUN; the device leaves the container's namespace
		p.ep.Close()  // ends writeTUN
		p.wg.Wait()
		p.stack.Close()
		p.stack.Wait()
	})
}

// denied reports whether the container may not reach a through the proxy (proxyDenied);
// its resolver it may, whatever its address.
func (p *proxyNet) denied(a netip.Addr) bool {
	if a == p.dns.Addr() {
		return false
	}
	for _, pf := range proxyDenied {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

func (p *proxyNet) dstOf(id stack.TransportEndpointID) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(id.LocalAddress.As4()), id.LocalPort)
}

// readTUN moves the container's packets into the stack.
func (p *proxyNet) readTUN() {
	defer p.wg.Done()
	n := max(p.dev.BatchSize(), 1)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, tunOffset+65535)
	}
	sizes := make([]int, n)
	for {
		count, err := p.dev.Read(bufs, sizes, tunOffset)
		for i := 0; i < count; i++ {
			p.tx.Add(uint64(sizes[i]))
			p.inject(bufs[i][tunOffset : tunOffset+sizes[i]])
		}
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			if !errors.Is(err, tun.ErrTooManySegments) {
				p.log.Debug("proxy tun read", "err", err)
			}
		}
	}
}

func (p *proxyNet) inject(pkt []byte) {
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != 4 {
		return
	}
	switch header.IPv4(pkt).TransportProtocol() {
	case header.TCPProtocolNumber, header.UDPProtocolNumber:
	default:
		return
	}
	pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	p.ep.InjectInbound(header.IPv4ProtocolNumber, pkb)
	pkb.DecRef()
}

// writeTUN moves the stack's packets to the container, a batch at a time.
func (p *proxyNet) writeTUN() {
	defer p.wg.Done()
	n := max(p.dev.BatchSize(), 1)
	store := make([][]byte, n)
	for i := range store {
		store[i] = make([]byte, tunOffset+65535)
	}
	bufs := make([][]byte, 0, n)
	for {
		pkt := p.ep.ReadContext(p.ctx)
		if pkt.IsNil() {
			return
		}
		bufs = bufs[:0]
		for !pkt.IsNil() {
			// Copied straight from the packet's chunks (ToView would copy it once more).
			b := store[len(bufs)][:tunOffset]
			for _, s := range pkt.AsSlices() {
				b = append(b, s...)
			}
			pkt.DecRef()
			bufs = append(bufs, b)
			if len(bufs) == n {
				break
			}
			pkt = p.ep.Read()
		}
		if _, err := p.dev.Write(bufs, tunOffset); err != nil {
			if p.ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			p.log.Debug("proxy tun write", "err", err)
		}
	}
}

func (p *proxyNet) dialed() { p.lastDial.Store(time.Now().UnixNano()) }

// handleTCP carries one TCP connection of the container through the proxy.
func (p *proxyNet) handleTCP(r *tcp.ForwarderRequest) {
	dst := p.dstOf(r.ID())
	if p.denied(dst.Addr()) {
		p.log.Debug("proxy: tcp: denied destination", "dst", dst.String())
		r.Complete(true)
		return
	}
	if !p.tcpSlots.take() {
		p.log.Debug("proxy: tcp connections at their limit", "dst", dst.String())
		r.Complete(true)
		return
	}
	defer p.tcpSlots.put()
	ctx, cancel := context.WithTimeout(p.ctx, proxyDialTimeout)
	out, err := p.d.DialContext(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		p.log.Debug("proxy: tcp", "dst", dst.String(), "err", err)
		r.Complete(true)
		return
	}
	p.dialed()
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		out.Close()
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	p.relayTCP(gonet.NewTCPConn(&wq, ep), out)
}

type closeWriter interface{ CloseWrite() error }

var relayBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyCounting copies src to dst, adding what it copied to n (when not nil).
func (p *proxyNet) copyCounting(dst, src net.Conn, n *atomic.Uint64) {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		nr, err := src.Read(buf)
		if nr > 0 {
			// Counted as received before it is passed on, so whoever read it finds it
			// counted.
			if n != nil {
				n.Add(uint64(nr))
			}
			if _, werr := dst.Write(buf[:nr]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxyNet) relayTCP(in, out net.Conn) {
	closeBoth := func() { in.Close(); out.Close() }
	stop := context.AfterFunc(p.ctx, closeBoth)
	defer stop()
	defer closeBoth()
	up := make(chan struct{})
	go func() {
		defer close(up)
		p.copyCounting(out, in, nil)
		if !outbound.CloseWrite(out) {
			// No way to tell the far end the container is done: give its answer a
			// little while, then end the connection.
			out.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
	}()
	p.copyCounting(in, out, &p.rx)
	if cw, ok := in.(closeWriter); ok {
		cw.CloseWrite()
	}
	// The far end is done: give the container a little while to finish its side.
	in.SetReadDeadline(time.Now().Add(10 * time.Second))
	<-up
}

// handleUDP takes a new UDP flow of the container (one source and destination), holding
// a slot of dnsFlowSlots (to the resolver) or udpSlots (any other) that it puts back when
// the flow ends. It runs on the stack's delivery path: the work goes to a goroutine.
func (p *proxyNet) handleUDP(r *udp.ForwarderRequest) {
	dst := p.dstOf(r.ID())
	flows := &p.udpSlots
	if dst == p.dns {
		flows = &p.dnsFlowSlots
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		flows.put()
		return
	}
	in := gonet.NewUDPConn(p.stack, &wq, ep)
	if dst == p.dns {
		go func() { defer flows.put(); p.serveDNS(in) }()
	} else {
		go func() { defer flows.put(); p.relayUDP(in, dst) }()
	}
}

// serveDNS answers the container's queries on one flow to its resolver through the proxy.
func (p *proxyNet) serveDNS(in *gonet.UDPConn) {
	stop := context.AfterFunc(p.ctx, func() { in.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer func() { wg.Wait(); in.Close() }()
	b := make([]byte, 65535)
	for {
		in.SetReadDeadline(time.Now().Add(proxyDNSIdle))
		n, err := in.Read(b)
		if err != nil {
			return
		}
		if !p.dnsSlots.take() {
			p.log.Debug("proxy: dns queries at their limit")
			continue // the client asks again
		}
		q := append([]byte(nil), b[:n]...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.dnsSlots.put()
			if ans := p.exchangeDNS(q); ans != nil {
				in.Write(ans)
			}
		}()
	}
}

func (p *proxyNet) exchangeDNS(q []byte) []byte {
	ctx, cancel := context.WithTimeout(p.ctx, proxyDNSTimeout)
	defer cancel()
	ans, err := outbound.ExchangeDNS(ctx, p.d, p.dns, q)
	if err != nil {
		p.log.Debug("proxy: dns", "err", err)
		return nil
	}
	p.dialed()
	p.rx.Add(uint64(len(ans)))
	return fitUDP(q, ans)
}

// fitUDP truncates an answer (which may have come over TCP) to what the query's sender
// takes over UDP: 512 bytes, or its EDNS0 buffer size.
func fitUDP(q, ans []byte) []byte {
	size := dns.MinMsgSize
	if len(ans) <= size {
		return ans // fits whatever the query allows: no need to parse it
	}
	var qm dns.Msg
	if qm.Unpack(q) == nil {
		if opt := qm.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
	}
	if len(ans) <= size {
		return ans
	}
	var am dns.Msg
	if am.Unpack(ans) != nil {
		return nil
	}
	am.Truncate(size)
	out, err := am.Pack()
	if err != nil {
		return nil
	}
	return out
}

// relayUDP carries one UDP flow of the container through the proxy.
func (p *proxyNet) relayUDP(in *gonet.UDPConn, dst netip.AddrPort) {
	ctx, cancel := context.WithTimeout(p.ctx, proxyDialTimeout)
	out, err := p.d.DialContext(ctx, "udp", dst.String())
	cancel()
	if err != nil {
		p.log.Debug("proxy: udp", "dst", dst.String(), "err", err)
		in.Close()
		return
	}
	p.dialed()
	closeBoth := func() { in.Close(); out.Close() }
	stop := context.AfterFunc(p.ctx, closeBoth)
	defer stop()
	defer closeBoth()
	var last atomic.Int64 // activity in either direction keeps the flow
	last.Store(time.Now().UnixNano())
	pump := func(dst, src net.Conn, n *atomic.Uint64) {
		bp := relayBufs.Get().(*[]byte)
		defer relayBufs.Put(bp)
		b := *bp
		// The deadline is moved only when it passes, not for every datagram: reading on
		// after a timeout while the flow was active since keeps the same idle rule.
		src.SetReadDeadline(time.Unix(0, last.Load()).Add(proxyUDPIdle))
		for {
			nr, err := src.Read(b)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < proxyUDPIdle {
					src.SetReadDeadline(time.Unix(0, last.Load()).Add(proxyUDPIdle))
					continue
				}
				return
			}
			last.Store(time.Now().UnixNano())
			if n != nil {
				n.Add(uint64(nr)) // before it is passed on, as in copyCounting
			}
			if _, err := dst.Write(b[:nr]); err != nil && !errors.Is(err, io.ErrShortWrite) {
				return
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(out, in, nil)
		closeBoth()
	}()
	pump(in, out, &p.rx)
	closeBoth()
	<-done
}

// attachProxy gives the container a proxy egress: a TUN bridged to d, addressed
// proxyTUNAddr, with the IPv4 default route into it and IPv6 unreachable, and resolver as
// its only nameserver.
func (m *Manager) attachProxy(hostID string, pid int, egressID string, d outbound.Dialer, resolver netip.Addr) (_ *attachment, err error) {
	a, tdev, link, v6off, err := m.prepare(hostID, pid, egressID, ProxyInterfaceName, true, tunDevice(ProxyInterfaceName, ProxyMTU))
	if err != nil {
		return nil, err
	}
	a.kind = KindProxy
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.endpoint = d.Server()
	if a.proxy, err = newProxyNet(tdev, d, resolver, ProxyMTU, m.log.With("host", hostID)); err != nil {
		tdev.Close()
		return nil, err
	}
	if err := configureLink(a.h, link, []netip.Prefix{proxyTUNAddr}, ProxyMTU, v6off); err != nil {
		return nil, err
	}
	if err := writeResolvConf(pid, resolver); err != nil {
		return nil, err
	}
	return a, nil
}
