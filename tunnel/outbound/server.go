package outbound

import (
	std_bufio "bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	shadowsocks "github.com/sagernet/sing-shadowsocks"
	"github.com/sagernet/sing-shadowsocks/shadowaead"
	"github.com/sagernet/sing-shadowsocks/shadowaead_2022"
	vmess "github.com/sagernet/sing-vmess"
	"github.com/sagernet/sing-vmess/vless"
	"github.com/sagernet/sing/common/auth"
	"github.com/sagernet/sing/common/buf"
	"github.com/sagernet/sing/common/bufio"
	"github.com/sagernet/sing/common/canceler"
	"github.com/sagernet/sing/common/logger"
	M "github.com/sagernet/sing/common/metadata"
	N "github.com/sagernet/sing/common/network"
	shttp "github.com/sagernet/sing/protocol/http"
	"github.com/sagernet/sing/protocol/socks"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
)

// ServerConfig is what Serve needs beyond the proxy_config the clients use.
type ServerConfig struct {
	// TLS is the server side of the config's tls block (certificate and key); required
	// when the proxy_config enables TLS.
	TLS *tls.Config
	// UDP is the shadowsocks server's UDP socket (the listener's port, by convention); nil
	// serves TCP only. Serve closes it.
	UDP net.PacketConn
	// Dial opens the relayed connections; nil means a net.Dialer of this process.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// ListenPacket opens the sockets of relayed UDP and of SOCKS UDP ASSOCIATE; nil means
	// net.ListenConfig of this process.
	ListenPacket func(ctx context.Context, network, address string) (net.PacketConn, error)
	// UDPTimeout ends an idle relayed UDP session; 0 means 60 s.
	UDPTimeout time.Duration
	Logger     *slog.Logger
}

// Serve runs the server side of a proxy_config on ln (socks, http CONNECT, shadowsocks,
// vmess, vless or trojan, in TLS when the config says so) until ctx ends, relaying to
// whatever the clients ask for. It is meant for tests and benchmarks standing in for a
// provider: it has one user, the config's, and no access control beyond that. When ctx
// ends, Serve closes the listener and every connection and socket it opened, and returns.
func Serve(ctx context.Context, ln net.Listener, raw json.RawMessage, cfg ServerConfig) error {
	s := &server{cfg: cfg, ctx: ctx, log: cfg.Logger, open: map[io.Closer]struct{}{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.Dial == nil {
		var d net.Dialer
		s.cfg.Dial = d.DialContext
	}
	if s.cfg.ListenPacket == nil {
		var lc net.ListenConfig
		s.cfg.ListenPacket = lc.ListenPacket
	}
	if s.cfg.UDPTimeout == 0 {
		s.cfg.UDPTimeout = 60 * time.Second
	}
	closeAll := func() {
		ln.Close()
		if cfg.UDP != nil {
			cfg.UDP.Close()
		}
	}
	pc, err := egressconf.Parse(raw)
	if err != nil {
		closeAll()
		return err
	}
	if pc.TLSEnabled() && cfg.TLS == nil {
		closeAll()
		return errors.New("outbound server: the proxy_config enables TLS but ServerConfig.TLS is nil")
	}
	handle, cleanup, err := s.protocol(pc)
	if err != nil {
		closeAll()
		return err
	}
	defer cleanup()

	stop := context.AfterFunc(ctx, func() {
		closeAll()
		s.shutdown()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			closeAll()
			s.shutdown()
			return fmt.Errorf("outbound server: accept: %w", err)
		}
		if !s.track(c) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.untrack(c)
			defer c.Close()
			conn := c
			if pc.TLSEnabled() {
				tc := tls.Server(c, cfg.TLS)
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := tc.HandshakeContext(hctx)
				cancel()
				if err != nil {
					s.log.Debug("outbound server: tls handshake", "err", err)
					return
				}
				conn = tc
			}
			if err := handle(ctx, conn, M.SocksaddrFromNet(c.RemoteAddr()).Unwrap()); err != nil && ctx.Err() == nil {
				s.log.Debug("outbound server: connection", "type", pc.Type, "err", err)
			}
		}()
	}
}

type handler func(ctx context.Context, conn net.Conn, source M.Socksaddr) error

// protocol returns the per-connection handler of the config's protocol.
func (s *server) protocol(pc *egressconf.Outbound) (handler, func(), error) {
	nop := func() {}
	var authenticator *auth.Authenticator
	if pc.Username != "" {
		authenticator = auth.NewAuthenticator([]auth.User{{Username: pc.Username, Password: pc.Password}})
	}
	switch pc.Type {
	case "socks":
		return func(ctx context.Context, conn net.Conn, source M.Socksaddr) error {
			return socks.HandleConnectionEx(ctx, conn, std_bufio.NewReader(conn), authenticator, s, s, s.cfg.UDPTimeout, source, nil)
		}, nop, nil
	case "http":
		return func(ctx context.Context, conn net.Conn, source M.Socksaddr) error {
			return shttp.HandleConnectionEx(ctx, conn, std_bufio.NewReader(conn), authenticator, s, source, nil)
		}, nop, nil
	case "shadowsocks":
		h := ssHandler{s}
		timeout := int64(s.cfg.UDPTimeout / time.Second)
		var (
			svc shadowsocks.Service
			err error
		)
		switch {
		case pc.Method == "none":
			svc = shadowsocks.NewNoneService(timeout, h)
		case slices.Contains(shadowaead.List, pc.Method):
			svc, err = shadowaead.NewService(pc.Method, nil, pc.Password, timeout, h)
		case slices.Contains(shadowaead_2022.List, pc.Method):
			svc, err = shadowaead_2022.NewServiceWithPassword(pc.Method, pc.Password, timeout, h, time.Now)
		default:
			err = fmt.Errorf("unsupported shadowsocks method %q", pc.Method)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("outbound server: %w", err)
		}
		if s.cfg.UDP != nil {
			go s.serveShadowsocksUDP(svc)
		}
		return func(ctx context.Context, conn net.Conn, source M.Socksaddr) error {
			//lint:ignore SA1019 sing-shadowsocks' handler interface takes M.Metadata
			return svc.NewConnection(ctx, conn, M.Metadata{Source: source})
		}, nop, nil
	case "vmess":
		svc := vmess.NewService[string](s)
		alterID := 0
		if pc.AlterID != nil {
			alterID = *pc.AlterID
		}
		if err := svc.UpdateUsers([]string{"user"}, []string{pc.UUID}, []int{alterID}); err != nil {
			return nil, nil, fmt.Errorf("outbound server: %w", err)
		}
		if err := svc.Start(); err != nil {
			return nil, nil, fmt.Errorf("outbound server: %w", err)
		}
		return func(ctx context.Context, conn net.Conn, source M.Socksaddr) error {
			return svc.NewConnection(ctx, conn, source, nil)
		}, func() { svc.Close() }, nil
	case "vless":
		svc := vless.NewService[string](logger.NOP(), s)
		svc.UpdateUsers([]string{"user"}, []string{pc.UUID}, []string{pc.Flow})
		return func(ctx context.Context, conn net.Conn, source M.Socksaddr) error {
			return svc.NewConnection(ctx, conn, source, nil)
		}, nop, nil
	case "trojan":
		key := trojanKey(pc.Password)
		return func(ctx context.Context, conn net.Conn, source M.Socksaddr) error {
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			cmd, dst, r, err := trojanAccept(conn, key)
			conn.SetReadDeadline(time.Time{})
			if err != nil {
				return err
			}
			if cmd == trojanCmdUDP {
				s.NewPacketConnectionEx(ctx, bufio.NewPacketConn(&trojanPacketConn{Conn: conn, r: r}), source, dst, nil)
			} else {
				s.NewConnectionEx(ctx, &readerConn{Conn: conn, r: r}, source, dst, nil)
			}
			return nil
		}, nop, nil
	}
	return nil, nil, fmt.Errorf("outbound server: unsupported type %q", pc.Type)
}

type server struct {
	cfg ServerConfig
	ctx context.Context
	log *slog.Logger

	mu     sync.Mutex
	open   map[io.Closer]struct{}
	closed bool
}

// track registers something to close on shutdown; false (and closed) after shutdown.
func (s *server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.open[c] = struct{}{}
	return true
}

func (s *server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

func (s *server) shutdown() {
	s.mu.Lock()
	s.closed = true
	open := s.open
	s.open = map[io.Closer]struct{}{}
	s.mu.Unlock()
	for c := range open {
		c.Close()
	}
}

// NewConnectionEx relays a proxied TCP connection to its destination.
func (s *server) NewConnectionEx(ctx context.Context, conn net.Conn, source, destination M.Socksaddr, onClose N.CloseHandlerFunc) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	out, err := s.cfg.Dial(dctx, "tcp", destination.String())
	cancel()
	if err != nil {
		N.CloseOnHandshakeFailure(conn, onClose, err)
		return
	}
	if !s.track(out) {
		N.CloseOnHandshakeFailure(conn, onClose, net.ErrClosed)
		return
	}
	defer s.untrack(out)
	if err := N.ReportConnHandshakeSuccess(conn, out); err != nil {
		out.Close()
		conn.Close()
		if onClose != nil {
			onClose(err)
		}
		return
	}
	err = bufio.CopyConn(ctx, conn, out)
	if onClose != nil {
		onClose(err)
	}
}

// NewPacketConnectionEx relays a proxied UDP session through a socket of its own.
func (s *server) NewPacketConnectionEx(ctx context.Context, conn N.PacketConn, source, destination M.Socksaddr, onClose N.CloseHandlerFunc) {
	udp, err := s.cfg.ListenPacket(ctx, "udp", ":0")
	if err != nil {
		N.CloseOnHandshakeFailure(conn, onClose, err)
		return
	}
	if !s.track(udp) {
		N.CloseOnHandshakeFailure(conn, onClose, net.ErrClosed)
		return
	}
	defer s.untrack(udp)
	if err := N.ReportPacketConnHandshakeSuccess(conn, udp); err != nil {
		udp.Close()
		conn.Close()
		if onClose != nil {
			onClose(err)
		}
		return
	}
	ctx, conn = canceler.NewPacketConn(ctx, conn, s.cfg.UDPTimeout)
	err = bufio.CopyPacketConn(ctx, conn, &resolvingPacketConn{NetPacketConn: bufio.NewPacketConn(udp), ctx: ctx})
	if onClose != nil {
		onClose(err)
	}
}

// ListenPacket implements socks.PacketListener: the UDP ASSOCIATE socket.
func (s *server) ListenPacket(_ net.ListenConfig, ctx context.Context, network, address string) (net.PacketConn, error) {
	pc, err := s.cfg.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	t := &trackedPacketConn{PacketConn: pc, s: s}
	if !s.track(t) {
		return nil, net.ErrClosed
	}
	return t, nil
}

// trackedPacketConn leaves the server's shutdown list when closed.
type trackedPacketConn struct {
	net.PacketConn
	s *server
}

func (c *trackedPacketConn) Close() error {
	c.s.untrack(c)
	return c.PacketConn.Close()
}

// resolvingPacketConn resolves domain destinations of relayed datagrams.
type resolvingPacketConn struct {
	N.NetPacketConn
	ctx context.Context
}

func (c *resolvingPacketConn) WritePacket(buffer *buf.Buffer, destination M.Socksaddr) error {
	if destination.IsDomain() {
		ips, err := net.DefaultResolver.LookupNetIP(c.ctx, "ip", destination.Fqdn)
		if err != nil || len(ips) == 0 {
			buffer.Release()
			return nil // dropped, as an unroutable datagram would be
		}
		destination = M.SocksaddrFromNetIP(netip.AddrPortFrom(ips[0].Unmap(), destination.Port))
	}
	return c.NetPacketConn.WritePacket(buffer, destination)
}

// ssHandler adapts the server to sing-shadowsocks' handler interfaces.
type ssHandler struct{ s *server }

//lint:ignore SA1019 sing-shadowsocks' handler interface takes M.Metadata
func (h ssHandler) NewConnection(ctx context.Context, conn net.Conn, md M.Metadata) error {
	h.s.NewConnectionEx(ctx, &rawCloser{conn}, md.Source, md.Destination, nil)
	return nil
}

// rawCloser closes a protocol conn by closing the connection under it. The shadowsocks
// 2022 server conn's own Close reads the writer its first Write sets, unguarded (a data
// race when the relay ends one way while the other is writing); closing underneath ends
// both directions all the same.
type rawCloser struct{ net.Conn }

func (c *rawCloser) Close() error {
	if u, ok := c.Conn.(interface{ Upstream() any }); ok {
		if raw, ok := u.Upstream().(net.Conn); ok {
			return raw.Close()
		}
	}
	return c.Conn.Close()
}

//lint:ignore SA1019 sing-shadowsocks' handler interface takes M.Metadata
func (h ssHandler) NewPacketConnection(ctx context.Context, conn N.PacketConn, md M.Metadata) error {
	h.s.NewPacketConnectionEx(ctx, conn, md.Source, md.Destination, nil)
	return nil
}

func (h ssHandler) NewError(ctx context.Context, err error) {
	h.s.log.Debug("outbound server: shadowsocks", "err", err)
}

func (s *server) serveShadowsocksUDP(svc shadowsocks.Service) {
	pc := bufio.NewPacketConn(s.cfg.UDP)
	for {
		b := buf.NewPacket()
		src, err := pc.ReadPacket(b)
		if err != nil {
			b.Release()
			if s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("outbound server: shadowsocks udp", "err", err)
			}
			return
		}
		//lint:ignore SA1019 sing-shadowsocks' handler interface takes M.Metadata
		if err := svc.NewPacket(s.ctx, pc, b, M.Metadata{Source: src}); err != nil {
			s.log.Debug("outbound server: shadowsocks udp packet", "err", err)
		}
	}
}
