package sshd

import (
	"net"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// DefaultGatewayCiphers is the gateway's cipher offer: AES-GCM only. An SSH client uses the
// first cipher of its own list that the server offers, and OpenSSH lists
// chacha20-poly1305 and the AES-CTR modes before AES-GCM, so offering any of those would
// make it choose one: chacha20 has no assembly in x/crypto on amd64 (about 0.7 GB/s per
// core here, against 5.6 GB/s for AES-GCM with AES-NI) and AES-CTR needs an HMAC (about
// 1.3 GB/s). Every OpenSSH since 6.2, PuTTY since 0.76, Go's x/crypto, libssh2 since 1.11
// and sshj support AES-GCM; a client that lacks it (paramiko, older libssh2) needs
// GatewayConfig.Ciphers with an AES-CTR mode added.
var DefaultGatewayCiphers = []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}

// gwBufioSize is the size of the write buffer x/crypto/ssh puts in front of the connection
// (bufio's default). A packet larger than it reaches the connection as two writes: the
// buffer's first 4096 bytes, then the rest of the packet straight away.
const gwBufioSize = 4096

// gwSpillWait bounds how long gwConn holds such a first part for the rest of its packet,
// in case it was a whole packet that happened to be exactly 4096 bytes long.
const gwSpillWait = 200 * time.Microsecond

// gwDeadlineSlack: a deadline moved later by less than this is left as it is. The ssh
// package sets both deadlines on every read and write (for its idle timeout); re-arming
// the runtime's timers twice per packet costs more than a deadline a second early.
const gwDeadlineSlack = time.Second

// gwConn is the gateway's connection under x/crypto/ssh. It makes each outgoing packet one
// write(2) (one writev) instead of two, which halves the TCP sends and the client's
// wake-ups on bulk output, and it rate-limits deadline updates.
type gwConn struct {
	net.Conn
	wait time.Duration // how long a spill is held (gwSpillWait; tests lengthen it)

	mu    sync.Mutex
	held  *[]byte     // a packet's first gwBufioSize bytes, waiting for the rest (pooled)
	timer *time.Timer // flushes held data whose rest does not follow; made on first use
	err   error       // from writing held data on the timer, reported by the next Write

	dmu      sync.Mutex
	deadline time.Time // the last deadline set on Conn
}

// gwHeldPool holds the spill buffers: an idle connection keeps none.
var gwHeldPool = sync.Pool{New: func() any { b := make([]byte, 0, gwBufioSize); return &b }}

func newGwConn(c net.Conn) *gwConn { return &gwConn{Conn: c, wait: gwSpillWait} }

// release returns the held buffer to the pool; under mu.
func (c *gwConn) release() {
	*c.held = (*c.held)[:0]
	gwHeldPool.Put(c.held)
	c.held = nil
}

func (c *gwConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.held != nil {
		c.timer.Stop()
		held := *c.held
		bufs := net.Buffers{held, p}
		n, err := bufs.WriteTo(c.Conn) // writev: one syscall, no copy
		c.release()
		if err != nil {
			c.err = err
			return int(max(n-int64(len(held)), 0)), err
		}
		return len(p), nil
	}
	if len(p) == gwBufioSize {
		c.held = gwHeldPool.Get().(*[]byte)
		*c.held = append(*c.held, p...)
		if c.timer == nil {
			c.timer = time.AfterFunc(c.wait, c.flushHeld)
		} else {
			c.timer.Reset(c.wait)
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// flushHeld writes held data whose packet ended after all (or whose rest is late).
func (c *gwConn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held == nil {
		return
	}
	if c.err == nil {
		if _, err := c.Conn.Write(*c.held); err != nil {
			c.err = err
		}
	}
	c.release()
}

// Close writes held data first: a connection closed within gwSpillWait of a lone
// 4096-byte packet would otherwise lose it.
func (c *gwConn) Close() error {
	c.flushHeld()
	return c.Conn.Close()
}

func (c *gwConn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !t.IsZero() && !c.deadline.IsZero() && !t.Before(c.deadline) && t.Sub(c.deadline) < gwDeadlineSlack {
		return nil
	}
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

func (c *gwConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.deadline = time.Time{} // the pair is no longer known to be equal
	c.dmu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *gwConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	c.deadline = time.Time{}
	c.dmu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}
