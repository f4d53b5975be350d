package sshd

import (
	"errors"
	"io"
	"sync"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// gwForwardData is the direct-tcpip extra data (RFC 4254 7.2).
type gwForwardData struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// directTCPIP serves -L forwards: app decides (OpenForward: the workspace's own loopback
// only, dialled inside its network namespace) and the gateway pipes the channel.
func (g *Gateway) directTCPIP(_ *ssh.Server, _ *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	var d gwForwardData
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil {
		_ = newChan.Reject(gossh.ConnectionFailed, "malformed forward request")
		return
	}
	if _, err := app.LoopbackAddrs(d.DestAddr); err != nil || d.DestPort == 0 || d.DestPort > 65535 {
		_ = newChan.Reject(gossh.Prohibited, app.ErrNotLoopback.Error())
		return
	}
	p, err := g.auth.principal(ctx, gwSessionKey(ctx))
	if err != nil {
		_ = newChan.Reject(gossh.Prohibited, "access denied")
		return
	}
	connID, err := g.connLease(ctx, p)
	if err != nil {
		_ = newChan.Reject(gossh.Prohibited, gwPlain(err))
		return
	}
	var ch gossh.Channel
	var chMu sync.Mutex
	f, err := g.svc.OpenForward(ctx, p, app.ForwardRequest{
		Login: ctx.User(), DestHost: d.DestAddr, DestPort: d.DestPort, ConnID: connID,
		OnEnd: func(string) {
			chMu.Lock()
			defer chMu.Unlock()
			if ch != nil {
				_ = ch.Close()
			}
		},
	})
	if err != nil {
		var ae *app.Error
		reason := gossh.ConnectionFailed
		if errors.As(err, &ae) && (ae.Kind == app.KindForbidden || ae.Kind == app.KindNotFound || ae.Kind == app.KindUnauthenticated) {
			reason = gossh.Prohibited
		}
		_ = newChan.Reject(reason, gwPlain(err))
		return
	}
	defer f.Close()
	c, reqs, err := newChan.Accept()
	if err != nil {
		return
	}
	chMu.Lock()
	ch = c
	chMu.Unlock()
	go gossh.DiscardRequests(reqs)
	select {
	case <-f.Lease.Done(): // ended while accepting
		_ = ch.Close()
		return
	default:
	}

	conn := f.Conn
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, ch)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			conn.Close()
			ch.Close()
		case <-gwWait(&wg):
		}
	}()
	wg.Wait()
	ch.Close()
}

func gwWait(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}
