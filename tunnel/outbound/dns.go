package outbound

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// dnsUDPTimeout is how long ExchangeDNS waits for a UDP answer before it asks over TCP.
const dnsUDPTimeout = 3 * time.Second

// ExchangeDNS sends a DNS query (wire format) to server through d and returns the answer:
// over UDP when d carries it, falling back to TCP when that gets no answer, and over TCP
// (RFC 7766 framing) otherwise. The answer's ID must match the query's.
func ExchangeDNS(ctx context.Context, d Dialer, server netip.AddrPort, query []byte) ([]byte, error) {
	if len(query) < 12 || len(query) > 0xffff {
		return nil, errors.New("dns: malformed query")
	}
	addr := server.String()
	if d.UDP() {
		uctx, cancel := context.WithTimeout(ctx, dnsUDPTimeout)
		ans, err := exchangeUDP(uctx, d, addr, query)
		cancel()
		if err == nil || ctx.Err() != nil {
			return ans, err
		}
	}
	return exchangeTCP(ctx, d, addr, query)
}

func deadlineOf(ctx context.Context, c net.Conn) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// udpAnswerBufs hold a datagram of any size while ExchangeDNS reads an answer (which it
// then copies out): one per query would be 64 KiB of garbage each time.
var udpAnswerBufs = sync.Pool{New: func() any { b := make([]byte, 0xffff); return &b }}

func exchangeUDP(ctx context.Context, d Dialer, addr string, query []byte) ([]byte, error) {
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer deadlineOf(ctx, c)()
	if _, err := c.Write(query); err != nil {
		return nil, err
	}
	bp := udpAnswerBufs.Get().(*[]byte)
	defer udpAnswerBufs.Put(bp)
	b := *bp
	for {
		n, err := c.Read(b)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if n >= 12 && b[0] == query[0] && b[1] == query[1] {
			return append([]byte(nil), b[:n]...), nil
		}
	}
}

func exchangeTCP(ctx context.Context, d Dialer, addr string, query []byte) ([]byte, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer deadlineOf(ctx, c)()
	msg := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(msg, uint16(len(query)))
	copy(msg[2:], query)
	if _, err := c.Write(msg); err != nil {
		return nil, ctxErr(ctx, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	ans := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, ans); err != nil {
		return nil, ctxErr(ctx, err)
	}
	if len(ans) < 12 || ans[0] != query[0] || ans[1] != query[1] {
		return nil, fmt.Errorf("dns over tcp: answer does not match the query")
	}
	return ans, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
