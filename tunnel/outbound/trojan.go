package outbound

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/sagernet/sing/common/buf"
	M "github.com/sagernet/sing/common/metadata"
)

// Trojan (https://trojan-gfw.github.io/trojan/protocol), usually inside TLS:
//
//	request: hex(SHA224(password)) CRLF command socks-address CRLF payload...
//	command 1 (CONNECT): the rest of the stream is the connection's.
//	command 3 (UDP ASSOCIATE): the rest is datagrams, each socks-address length(2) CRLF payload.
//
// socks-address is SOCKS5's ATYP ADDR PORT, written by sing's SocksaddrSerializer.
const (
	trojanKeyLen     = 56
	trojanCmdConnect = 1
	trojanCmdUDP     = 3
)

var crlf = []byte{'\r', '\n'}

func trojanKey(password string) [trojanKeyLen]byte {
	var k [trojanKeyLen]byte
	sum := sha256.Sum224([]byte(password))
	hex.Encode(k[:], sum[:])
	return k
}

func trojanRequest(key [trojanKeyLen]byte, cmd byte, dst M.Socksaddr) ([]byte, error) {
	b := buf.NewSize(trojanKeyLen + 2 + 1 + M.SocksaddrSerializer.AddrPortLen(dst) + 2)
	defer b.Release()
	b.Write(key[:])
	b.Write(crlf)
	b.WriteByte(cmd)
	if err := M.SocksaddrSerializer.WriteAddrPort(b, dst); err != nil {
		return nil, err
	}
	b.Write(crlf)
	return append([]byte(nil), b.Bytes()...), nil
}

// trojanDial sends a CONNECT request for dst on c (connected to the server) and returns
// the stream.
func trojanDial(c net.Conn, key [trojanKeyLen]byte, dst M.Socksaddr) (net.Conn, error) {
	req, err := trojanRequest(key, trojanCmdConnect, dst)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("trojan request: %w", err)
	}
	return c, nil
}

// trojanDialPacket sends a UDP ASSOCIATE request on c and returns its datagram conn.
func trojanDialPacket(c net.Conn, key [trojanKeyLen]byte, dst M.Socksaddr) (net.PacketConn, error) {
	req, err := trojanRequest(key, trojanCmdUDP, dst)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("trojan request: %w", err)
	}
	return &trojanPacketConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// trojanAccept reads a request from a client (the password already matched means the
// connection is one of ours) and returns the command, destination and the stream, whose
// reader holds whatever followed the request.
func trojanAccept(c net.Conn, key [trojanKeyLen]byte) (byte, M.Socksaddr, *bufio.Reader, error) {
	r := bufio.NewReader(c)
	var got [trojanKeyLen + 2]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return 0, M.Socksaddr{}, nil, fmt.Errorf("trojan: read key: %w", err)
	}
	if subtle.ConstantTimeCompare(got[:trojanKeyLen], key[:]) != 1 || got[trojanKeyLen] != '\r' || got[trojanKeyLen+1] != '\n' {
		return 0, M.Socksaddr{}, nil, errors.New("trojan: wrong password")
	}
	cmd, err := r.ReadByte()
	if err != nil {
		return 0, M.Socksaddr{}, nil, err
	}
	if cmd != trojanCmdConnect && cmd != trojanCmdUDP {
		return 0, M.Socksaddr{}, nil, fmt.Errorf("trojan: unknown command %d", cmd)
	}
	dst, err := M.SocksaddrSerializer.ReadAddrPort(r)
	if err != nil {
		return 0, M.Socksaddr{}, nil, fmt.Errorf("trojan: read destination: %w", err)
	}
	if err := skipCRLF(r); err != nil {
		return 0, M.Socksaddr{}, nil, err
	}
	return cmd, dst, r, nil
}

func skipCRLF(r *bufio.Reader) error {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	if b != [2]byte{'\r', '\n'} {
		return errors.New("trojan: missing CRLF")
	}
	return nil
}

// readerConn is a conn whose reads go through r (which buffered part of the stream).
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// trojanPacketConn is the datagram side of a trojan UDP ASSOCIATE, for both ends.
type trojanPacketConn struct {
	net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
}

func (c *trojanPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	src, err := M.SocksaddrSerializer.ReadAddrPort(c.r)
	if err != nil {
		return 0, nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c.r, l[:]); err != nil {
		return 0, nil, err
	}
	if err := skipCRLF(c.r); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n > len(p) {
		if _, err := c.r.Discard(n); err != nil {
			return 0, nil, err
		}
		return 0, nil, io.ErrShortBuffer
	}
	if _, err := io.ReadFull(c.r, p[:n]); err != nil {
		return 0, nil, err
	}
	var addr net.Addr = src
	if src.IsIP() {
		addr = src.UDPAddr()
	}
	return n, addr, nil
}

func (c *trojanPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if len(p) > 0xffff {
		return 0, errors.New("trojan: datagram too large")
	}
	dst := M.SocksaddrFromNet(addr).Unwrap()
	b := buf.NewSize(M.SocksaddrSerializer.AddrPortLen(dst) + 4 + len(p))
	defer b.Release()
	if err := M.SocksaddrSerializer.WriteAddrPort(b, dst); err != nil {
		return 0, err
	}
	binary.Write(b, binary.BigEndian, uint16(len(p)))
	b.Write(crlf)
	b.Write(p)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
