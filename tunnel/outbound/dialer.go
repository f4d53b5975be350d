package outbound

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	shadowsocks "github.com/sagernet/sing-shadowsocks"
	"github.com/sagernet/sing-shadowsocks/shadowimpl"
	vmess "github.com/sagernet/sing-vmess"
	"github.com/sagernet/sing-vmess/vless"
	"github.com/sagernet/sing/common"
	"github.com/sagernet/sing/common/logger"
	M "github.com/sagernet/sing/common/metadata"
	N "github.com/sagernet/sing/common/network"
	shttp "github.com/sagernet/sing/protocol/http"
	"github.com/sagernet/sing/protocol/socks"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
)

// ErrNoUDP is returned when UDP is asked of an outbound that does not carry it.
var ErrNoUDP = errors.New("the proxy outbound carries no UDP")

// Dialer reaches the internet through one proxy server.
type Dialer interface {
	// DialContext connects to address (host:port; a host name is resolved by the proxy, not
	// here) through the proxy. network is "tcp", or "udp" when UDP() is true: the conn is
	// then a connected datagram conn, each Write one datagram to address and each Read one
	// datagram from it.
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	// UDP reports whether the outbound carries UDP.
	UDP() bool
	// Server is the proxy server, host:port.
	Server() string
	// Type is the proxy_config type.
	Type() string
}

// Options are the ways of a Dialer into the network.
type Options struct {
	// Dial opens the connections to the proxy server itself ("tcp" or "udp"). nil means a
	// net.Dialer of this process.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// HandshakeTimeout bounds reaching the server and the protocol handshake of one dial
	// when ctx has no earlier deadline; 0 means 15 s.
	HandshakeTimeout time.Duration
}

// New builds the Dialer of a proxy_config (checked and decoded by egressconf.Parse; its
// errors are *egressconf.Error).
func New(raw json.RawMessage, opts Options) (Dialer, error) {
	cfg, err := egressconf.Parse(raw)
	if err != nil {
		return nil, err
	}
	return NewFromConfig(cfg, opts)
}

// NewFromConfig builds the Dialer of a parsed proxy_config.
func NewFromConfig(cfg *egressconf.Outbound, opts Options) (Dialer, error) {
	if opts.Dial == nil {
		var nd net.Dialer
		opts.Dial = nd.DialContext
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 15 * time.Second
	}
	d := &dialer{cfg: cfg, opts: opts, server: M.ParseSocksaddrHostPort(cfg.Server, uint16(cfg.ServerPort)), tls: clientTLS(cfg)}
	var err error
	switch cfg.Type {
	case "socks":
		version := socks.Version5
		if cfg.Version != "" {
			if version, err = socks.ParseVersion(cfg.Version); err != nil {
				return nil, egressconf.Invalid(".version", "%v", err)
			}
		}
		d.socks = socks.NewClient(sysDialer{d}, d.server, version, cfg.Username, cfg.Password)
	case "http":
		d.http = shttp.NewClient(shttp.Options{Dialer: sysDialer{d}, Server: d.server, Username: cfg.Username, Password: cfg.Password})
	case "shadowsocks":
		if d.ss, err = shadowimpl.FetchMethod(cfg.Method, cfg.Password, time.Now); err != nil {
			return nil, egressconf.Invalid(".password", "%v", err)
		}
	case "vmess":
		var vo []vmess.ClientOption
		if cfg.GlobalPadding {
			vo = append(vo, vmess.ClientWithGlobalPadding())
		}
		if cfg.AuthenticatedLength {
			vo = append(vo, vmess.ClientWithAuthenticatedLength())
		}
		security := cfg.Security
		if security == "" {
			security = "auto"
		}
		alterID := 0
		if cfg.AlterID != nil {
			alterID = *cfg.AlterID
		}
		if d.vmess, err = vmess.NewClient(cfg.UUID, security, alterID, vo...); err != nil {
			return nil, egressconf.Invalid(".security", "%v", err)
		}
	case "vless":
		if d.vless, err = vless.NewClient(cfg.UUID, cfg.Flow, logger.NOP()); err != nil {
			return nil, egressconf.Invalid(".flow", "%v", err)
		}
	case "trojan":
		d.trojanKey = trojanKey(cfg.Password)
	default:
		return nil, egressconf.Invalid(".type", "unsupported type %q", cfg.Type)
	}
	return d, nil
}

type dialer struct {
	cfg    *egressconf.Outbound
	opts   Options
	server M.Socksaddr
	tls    *tls.Config

	socks     *socks.Client
	http      *shttp.Client
	ss        shadowsocks.Method
	vmess     *vmess.Client
	vless     *vless.Client
	trojanKey [trojanKeyLen]byte
}

func (d *dialer) UDP() bool      { return d.cfg.UDP() }
func (d *dialer) Server() string { return d.cfg.ServerAddr() }
func (d *dialer) Type() string   { return d.cfg.Type }

func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	dst := M.ParseSocksaddr(address)
	if !dst.IsValid() || dst.Port == 0 {
		return nil, fmt.Errorf("dial %s through the proxy: not host:port", address)
	}
	dst = dst.Unwrap()
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.opts.HandshakeTimeout)
		defer cancel()
	}
	var (
		c   net.Conn
		err error
	)
	switch N.NetworkName(network) {
	case N.NetworkTCP:
		if !d.cfg.TCP() {
			return nil, fmt.Errorf("dial %s: the proxy outbound carries no TCP (network %q)", address, d.cfg.Network)
		}
		c, err = d.dialTCP(ctx, dst)
	case N.NetworkUDP:
		if !d.UDP() {
			return nil, ErrNoUDP
		}
		c, err = d.dialUDP(ctx, dst)
	default:
		return nil, fmt.Errorf("dial %s: unsupported network %q", address, network)
	}
	if err != nil {
		return nil, fmt.Errorf("%s proxy %s: %w", d.cfg.Type, d.Server(), err)
	}
	return c, nil
}

// serverConn connects to the proxy server, through TLS when the config says so.
func (d *dialer) serverConn(ctx context.Context) (net.Conn, error) {
	c, err := d.opts.Dial(ctx, "tcp", d.server.String())
	if err != nil {
		return nil, err
	}
	if d.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

// handshake runs a protocol handshake on c, closing c if ctx ends first.
func handshake[T any](ctx context.Context, c net.Conn, f func() (T, error)) (T, error) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	v, err := f()
	if !stop() {
		var zero T
		c.Close()
		if err == nil {
			err = ctx.Err()
		}
		return zero, err
	}
	if err != nil {
		c.Close()
	}
	return v, err
}

func (d *dialer) dialTCP(ctx context.Context, dst M.Socksaddr) (net.Conn, error) {
	switch d.cfg.Type {
	case "socks":
		return d.socks.DialContext(ctx, N.NetworkTCP, dst)
	case "http":
		return d.http.DialContext(ctx, N.NetworkTCP, dst)
	}
	if d.cfg.Type == "shadowsocks" {
		c, err := d.opts.Dial(ctx, "tcp", d.server.String())
		if err != nil {
			return nil, err
		}
		return handshake(ctx, c, func() (net.Conn, error) { return d.ss.DialConn(c, dst) })
	}
	c, err := d.serverConn(ctx)
	if err != nil {
		return nil, err
	}
	return handshake(ctx, c, func() (net.Conn, error) {
		switch d.cfg.Type {
		case "vmess":
			return d.vmess.DialConn(c, dst)
		case "vless":
			return d.vless.DialConn(c, dst)
		case "trojan":
			return trojanDial(c, d.trojanKey, dst)
		}
		return nil, os.ErrInvalid
	})
}

func (d *dialer) dialUDP(ctx context.Context, dst M.Socksaddr) (net.Conn, error) {
	pc, err := d.packetConn(ctx, dst)
	if err != nil {
		return nil, err
	}
	return &boundPacketConn{PacketConn: pc, dst: dst}, nil
}

func (d *dialer) packetConn(ctx context.Context, dst M.Socksaddr) (net.PacketConn, error) {
	switch d.cfg.Type {
	case "socks":
		c, err := d.socks.DialContext(ctx, N.NetworkUDP, dst)
		if err != nil {
			return nil, err
		}
		return c.(net.PacketConn), nil
	case "shadowsocks":
		c, err := d.opts.Dial(ctx, "udp", d.server.String())
		if err != nil {
			return nil, err
		}
		return d.ss.DialPacketConn(c), nil
	}
	c, err := d.serverConn(ctx)
	if err != nil {
		return nil, err
	}
	return handshake(ctx, c, func() (net.PacketConn, error) {
		switch {
		case d.cfg.Type == "vmess" && d.cfg.PacketEncoding == "xudp":
			return d.vmess.DialXUDPPacketConn(c, dst)
		case d.cfg.Type == "vmess":
			return d.vmess.DialPacketConn(c, dst)
		// vless: the early variants, as sing-box uses them. In sing-vmess v0.2.8
		// DialXUDPPacketConn asks for a TCP stream instead of a mux, and DialPacketConn
		// sends an empty datagram ahead of the first; the early ones send the request
		// header with the first datagram (or at once for xudp).
		case d.cfg.Type == "vless" && d.cfg.PacketEncoding == "xudp":
			return d.vless.DialEarlyXUDPPacketConn(c, dst)
		case d.cfg.Type == "vless":
			return d.vless.DialEarlyPacketConn(c, dst)
		case d.cfg.Type == "trojan":
			return trojanDialPacket(c, d.trojanKey, dst)
		}
		return nil, os.ErrInvalid
	})
}

// boundPacketConn is a datagram conn to one destination over a proxy's packet conn.
type boundPacketConn struct {
	net.PacketConn
	dst M.Socksaddr
}

func (c *boundPacketConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFrom(b)
	return n, err
}

func (c *boundPacketConn) Write(b []byte) (int, error) {
	if c.dst.IsDomain() {
		return c.WriteTo(b, c.dst)
	}
	return c.WriteTo(b, c.dst.UDPAddr())
}

func (c *boundPacketConn) RemoteAddr() net.Addr { return c.dst }

// sysDialer is the N.Dialer the sing clients reach the proxy server with.
type sysDialer struct{ d *dialer }

func (s sysDialer) DialContext(ctx context.Context, network string, dst M.Socksaddr) (net.Conn, error) {
	if N.NetworkName(network) == N.NetworkUDP {
		return s.d.opts.Dial(ctx, "udp", udpRelayAddr(s.d.server, dst).String())
	}
	if dst == s.d.server {
		return s.d.serverConn(ctx)
	}
	return s.d.opts.Dial(ctx, network, dst.String())
}

// udpRelayAddr is where datagrams go for a socks server (at server) that answered a UDP
// ASSOCIATE with relay. An unspecified relay address means the server's own; so is taken
// a loopback, private or link-local one, which is the server's view of itself (behind NAT,
// in a container) or else would have this process send to its own machine, its own
// networks or their metadata services at the server's word.
func udpRelayAddr(server, relay M.Socksaddr) M.Socksaddr {
	if !relay.IsIP() {
		return relay
	}
	a := relay.Addr.Unmap()
	if a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() {
		return M.Socksaddr{Addr: server.Addr, Fqdn: server.Fqdn, Port: relay.Port}
	}
	return relay
}

func (s sysDialer) ListenPacket(ctx context.Context, dst M.Socksaddr) (net.PacketConn, error) {
	return nil, errors.New("outbound: listen packet is not used")
}

// CloseWrite half-closes a connection DialContext returned (through its protocol's
// wrappers, down to whatever under them can: TLS's close_notify or TCP's FIN), telling the
// far end that nothing more comes while its answer may still flow. It reports whether
// the connection could.
func CloseWrite(c net.Conn) bool {
	if _, ok := common.Cast[N.WriteCloser](c); !ok {
		return false
	}
	return N.CloseWrite(c) == nil
}
