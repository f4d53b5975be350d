package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

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
)

// These tests run a proxyNet in this process, with no namespace: its TUN is another gVisor
// stack (the "container", addressed proxyTUNAddr) and its outbound a dialer that counts
// what it is asked and carries it to echo services on loopback.

// stackTUN is a tun.Device whose other end is a gVisor stack.
type stackTUN struct {
	ep     *channel.Endpoint // the container stack's link
	ctx    context.Context
	cancel context.CancelFunc
}

func (d *stackTUN) File() *os.File           { return nil }
func (d *stackTUN) MTU() (int, error)        { return ProxyMTU, nil }
func (d *stackTUN) Name() (string, error)    { return "test", nil }
func (d *stackTUN) Events() <-chan tun.Event { return nil }
func (d *stackTUN) BatchSize() int           { return 1 }
func (d *stackTUN) Close() error             { d.cancel(); return nil }

func (d *stackTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	pkt := d.ep.ReadContext(d.ctx)
	if pkt.IsNil() {
		return 0, os.ErrClosed
	}
	view := pkt.ToView()
	pkt.DecRef()
	sizes[0] = copy(bufs[0][offset:], view.AsSlice())
	view.Release()
	return 1, nil
}

func (d *stackTUN) Write(bufs [][]byte, offset int) (int, error) {
	if d.ctx.Err() != nil {
		return 0, os.ErrClosed
	}
	for _, b := range bufs {
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), b[offset:]...))})
		d.ep.InjectInbound(header.IPv4ProtocolNumber, pkb)
		pkb.DecRef()
	}
	return len(bufs), nil
}

// countingDialer is the outbound: it records each destination it is asked for and
// connects every TCP one to tcpTo and every UDP one to udpTo.
type countingDialer struct {
	tcpTo, udpTo string
	mu           sync.Mutex
	dials        []string // network/address
}

func (d *countingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, network+"/"+address)
	d.mu.Unlock()
	to := d.tcpTo
	if network == "udp" {
		to = d.udpTo
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

func (d *countingDialer) UDP() bool      { return true }
func (d *countingDialer) Server() string { return "test:1" }
func (d *countingDialer) Type() string   { return "test" }

func (d *countingDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials)
}

// proxyNetTest is a proxyNet with its container stack and outbound.
type proxyNetTest struct {
	p   *proxyNet
	c   *stack.Stack
	d   *countingDialer
	ctx context.Context
}

func newProxyNetTest(t *testing.T) *proxyNetTest {
	t.Helper()
	// Echo services the outbound reaches.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(b[:n], from)
		}
	}()

	c := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	cep := channel.New(1024, ProxyMTU, "")
	if err := c.CreateNIC(nicID, cep); err != nil {
		t.Fatal(err)
	}
	if err := c.AddProtocolAddress(nicID, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(proxyTUNAddr.Addr().As4()).WithPrefix(),
	}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	c.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})

	dev := &stackTUN{ep: cep}
	dev.ctx, dev.cancel = context.WithCancel(context.Background())
	d := &countingDialer{tcpTo: ln.Addr().String(), udpTo: pc.LocalAddr().String()}
	p, err := newProxyNet(dev, d, DefaultProxyDNSServer, ProxyMTU, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	t.Cleanup(func() {
		cancel()
		p.Close()
		cep.Close()
		c.Close()
		c.Wait()
	})
	return &proxyNetTest{p: p, c: c, d: d, ctx: ctx}
}

func fullAddr(ap string) tcpip.FullAddress {
	a := netip.MustParseAddrPort(ap)
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(a.Addr().As4()), Port: a.Port()}
}

// dialTCP connects from the container and checks the connection carries data.
func (pt *proxyNetTest) dialTCP(dst string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(pt.ctx, 3*time.Second)
	defer cancel()
	conn, err := gonet.DialContextTCP(ctx, pt.c, fullAddr(dst), ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		conn.Close()
		return nil, err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// With room for two TCP relays, a third connection is reset without reaching the proxy,
// and once one of the two closes a new one goes through.
func TestProxyNetTCPLimit(t *testing.T) {
	pt := newProxyNetTest(t)
	pt.p.tcpSlots.max = 2
	var conns []net.Conn
	for i, dst := range []string{"203.0.113.1:80", "203.0.113.2:80"} {
		c, err := pt.dialTCP(dst)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if c, err := pt.dialTCP("203.0.113.3:80"); err == nil {
		c.Close()
		t.Fatal("a third connection went through with room for two")
	}
	if n := pt.d.count(); n != 2 {
		t.Fatalf("%d dials, want 2: %v", n, pt.d.dials)
	}
	conns[0].Close()
	eventually(t, 5*time.Second, "a relay's slot is put back when it closes", func() (bool, string) {
		n := pt.p.tcpSlots.n.Load()
		return n < 2, fmt.Sprintf("%d TCP slots held", n)
	})
	c, err := pt.dialTCP("203.0.113.4:80")
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	c.Close()
}

// With room for two UDP flows, a third gets no answer and never reaches the proxy, while
// the two still carry datagrams.
func TestProxyNetUDPLimit(t *testing.T) {
	pt := newProxyNetTest(t)
	pt.p.udpSlots.max = 2
	exchange := func(dst string) bool {
		laddr := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(proxyTUNAddr.Addr().As4())}
		raddr := fullAddr(dst)
		c, err := gonet.DialUDP(pt.c, &laddr, &raddr, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := make([]byte, 16)
		for i := 0; i < 3; i++ { // UDP: a datagram may be lost
			if _, err := c.Write([]byte("ping")); err != nil {
				return false
			}
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, err := c.Read(b); err == nil && string(b[:n]) == "ping" {
				return true
			}
		}
		return false
	}
	for _, dst := range []string{"203.0.113.1:7", "203.0.113.2:7"} {
		if !exchange(dst) {
			t.Fatalf("no answer through %s", dst)
		}
	}
	if exchange("203.0.113.3:7") {
		t.Fatal("a third flow was answered with room for two")
	}
	if n := pt.d.count(); n != 2 {
		t.Fatalf("%d dials, want 2: %v", n, pt.d.dials)
	}
	if n := pt.p.udpSlots.n.Load(); n != 2 {
		t.Fatalf("%d UDP slots held, want 2", n)
	}
}

// A connection to the cloud metadata address is reset and never reaches the proxy, nor
// does a datagram to it; a connection to a public address does.
func TestProxyNetDeniedDestination(t *testing.T) {
	pt := newProxyNetTest(t)
	if c, err := pt.dialTCP("169.254.169.254:80"); err == nil {
		c.Close()
		t.Fatal("connected to 169.254.169.254:80")
	}
	laddr := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(proxyTUNAddr.Addr().As4())}
	raddr := fullAddr("169.254.169.254:123")
	u, err := gonet.DialUDP(pt.c, &laddr, &raddr, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("ping"))
	u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := u.Read(make([]byte, 16)); err == nil {
		t.Fatal("answered from 169.254.169.254:123")
	}
	u.Close()
	if n := pt.d.count(); n != 0 {
		t.Fatalf("the proxy was asked for %v", pt.d.dials)
	}
	c, err := pt.dialTCP("203.0.113.1:443")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := pt.d.count(); n != 1 {
		t.Fatalf("%d dials, want 1: %v", n, pt.d.dials)
	}
}

func TestProxyNetDenied(t *testing.T) {
	p := &proxyNet{dns: netip.MustParseAddrPort("198.18.0.2:53")}
	for a, want := range map[string]bool{
		"169.254.169.254": true,
		"169.254.0.1":     true,
		"0.0.0.0":         true,
		"0.1.2.3":         true,
		"127.0.0.1":       true,
		"127.9.9.9":       true,
		"224.0.0.1":       true,
		"239.255.255.250": true,
		"255.255.255.255": true,
		"198.18.0.1":      true,
		"198.19.255.255":  true,
		"198.18.0.2":      false, // the resolver
		"198.20.0.1":      false,
		"10.0.0.1":        false, // private ranges are allowed
		"192.168.1.1":     false,
		"172.16.0.1":      false,
		"1.1.1.1":         false,
		"203.0.113.9":     false,
	} {
		if got := p.denied(netip.MustParseAddr(a)); got != want {
			t.Errorf("denied(%s) = %v, want %v", a, got, want)
		}
	}
}
