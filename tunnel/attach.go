package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
)

type attachment struct {
	hostID, egressID string
	pid              int
	key              string // what was asked: same key, nothing to do
	ifname           string
	kind             string         // KindWireGuardKernel, KindWireGuardGo or KindProxy
	dev              *device.Device // wireguard-go
	wgc              *wgctrl.Client // kernel WireGuard: opened in the container's namespace
	proxy            *proxyNet      // proxy
	endpoint         string         // proxy server, host:port
	h                *netlink.Handle
	ns               netns.NsHandle
	index            int
	at               time.Time
}

// Attach gives the container whose init process is pid (app.RuntimeHost.Pid) the egress
// tunnel of e, whose device lives in the container's network namespace and carries all
// of its traffic, with the container's only routes (IPv4 and IPv6 default) into it or, for
// a family the tunnel has no address of, unreachable:
//
//   - wireguard: a kernel WireGuard link, created and configured in the server's
//     namespace (where its UDP socket stays) and moved into the container's, or, without
//     kernel WireGuard (see Config.WireGuardMode), a WireGuard device run by this process
//     (wireguard-go) on a TUN; the container's resolver becomes wg_dns_server.
//   - proxy: a user-space network stack in this process ends the TUN's TCP and UDP and
//     carries them through the proxy_config outbound (TCP always; UDP when the protocol
//     carries it, else refused); the container's resolver becomes Config.ProxyDNSServer,
//     whose UDP port 53 is answered through the proxy in any case (over TCP when the
//     outbound has no UDP). IPv6 is unreachable.
//
// The container must have no network but loopback (Docker network "none"): Attach refuses
// a namespace with any other interface, and the server's own namespace. Attaching a host
// again replaces its tunnel, or does nothing if nothing changed.
func (m *Manager) Attach(ctx context.Context, hostID string, pid int, e app.EgressIP) error {
	if hostID == "" {
		return errors.New("tunnel attach: empty host id")
	}
	if pid <= 0 {
		return fmt.Errorf("tunnel attach %s: no container process (pid %d): is it running?", hostID, pid)
	}
	var (
		key, endpoint string
		build         func() (*attachment, error)
	)
	if e.TunnelType == app.TunnelProxy {
		d, err := newDialer(e, outbound.Options{})
		if err != nil {
			return err
		}
		dns := m.cfg.ProxyDNSServer
		endpoint = d.Server()
		key = fmt.Sprintf("%d\x00proxy\x00%s\x00%s\x00%s", pid, e.ProxyConfig, dns, e.ID)
		build = func() (*attachment, error) { return m.attachProxy(hostID, pid, e.ID, d, dns) }
	} else {
		cfg, err := parseWG(e)
		if err != nil {
			return err
		}
		kernel, err := m.kernelWireGuard()
		if err != nil {
			return fmt.Errorf("tunnel attach %s: %w", hostID, err)
		}
		// The key is what was asked, with the endpoint as configured: resolving its name
		// happens only when a tunnel is (re)built, so an unchanged tunnel is neither torn
		// down when a round-robin name answers another address nor failed by a passing DNS
		// outage on the server.
		key = strings.Join([]string{strconv.Itoa(pid), "wireguard", e.WGEndpoint, e.WGPublicKey, e.WGPrivateKey,
			e.WGPresharedKey, e.WGAllowedIPs, e.WGPeerAddress, e.WGDNSServer, e.ID}, "\x00")
		build = func() (*attachment, error) {
			ep, err := cfg.endpoint(ctx)
			if err != nil {
				return nil, err
			}
			endpoint = ep.String()
			return m.attachWireGuard(hostID, pid, e.ID, cfg, ep, cfg.uapi(ep), kernel)
		}
	}

	hl := m.hostLock(hostID)
	hl.Lock()
	defer hl.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("tunnel manager closed")
	}
	old := m.hosts[hostID]
	m.mu.Unlock()
	if old != nil {
		if old.key == key && old.alive() {
			return nil
		}
		m.detachLocked(old)
	}

	a, err := build()
	if err != nil {
		return fmt.Errorf("tunnel attach %s: %w", hostID, err)
	}
	a.key = key
	m.mu.Lock()
	m.hosts[hostID] = a
	m.mu.Unlock()
	m.log.Info("egress tunnel attached", "host", hostID, "egress", e.ID, "type", e.TunnelType, "pid", pid, "endpoint", endpoint)
	return nil
}

func (a *attachment) alive() bool {
	_, err := a.h.LinkByIndex(a.index)
	return err == nil
}

// prepare opens the namespace of the container whose init process is pid, checks that a
// tunnel may be attached there (not the server's own namespace nor, when the container's
// resolv.conf is to be written, its mount namespace; nothing but loopback), and has mkdev
// create the tunnel's device ifname in it (a TUN, which mkdev returns, or a kernel link).
// On error everything is released; otherwise the caller owns tdev until it hands it to
// whatever closes it with the attachment.
func (m *Manager) prepare(hostID string, pid int, egressID, ifname string, resolver bool, mkdev func(*attachment) (tun.Device, error)) (*attachment, tun.Device, netlink.Link, bool, error) {
	target, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("netns of pid %d: %w", pid, err)
	}
	a := &attachment{hostID: hostID, egressID: egressID, pid: pid, ifname: ifname, ns: target, at: time.Now()}
	var tdev tun.Device
	fail := func(err error) (*attachment, tun.Device, netlink.Link, bool, error) {
		if tdev != nil {
			tdev.Close()
		}
		a.close()
		return nil, nil, nil, false, err
	}
	if same, err := nsthread.IsOwn(target); err != nil || same {
		if err == nil {
			err = errors.New("the process is in the server's own network namespace")
		}
		return fail(fmt.Errorf("pid %d: %w", pid, err))
	}
	if resolver {
		if same, err := sameNamespace(pid, "mnt"); err != nil || same {
			if err == nil {
				err = errors.New("the process shares the server's mount namespace: refusing to rewrite the server's resolv.conf")
			}
			return fail(fmt.Errorf("pid %d: %w", pid, err))
		}
	}
	var v6off bool
	if err := nsthread.Run(target, func() (err error) {
		v6off = ipv6Disabled()
		if a.h, err = netlink.NewHandle(); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	// A tunnel device already in the container is not one this manager holds (Attach has
	// detached its own): a kernel WireGuard link outlives a crashed server and would keep
	// the container on its old peer. Remove it; any other interface is refused below.
	if err := removeStaleTunnels(a.h); err != nil {
		return fail(err)
	}
	if tdev, err = mkdev(a); err != nil {
		return fail(err)
	}
	link, err := a.h.LinkByName(ifname)
	if err != nil {
		return fail(fmt.Errorf("find %s in the container: %w", ifname, err))
	}
	a.index = link.Attrs().Index
	// The container must have nothing but loopback and the tunnel: anything else would be
	// a way around it.
	links, err := a.h.LinkList()
	if err != nil {
		return fail(fmt.Errorf("list container links: %w", err))
	}
	for _, l := range links {
		if l.Attrs().Index != a.index && l.Attrs().Flags&net.FlagLoopback == 0 {
			return fail(fmt.Errorf("container network namespace has interface %q: egress tunnels need a container without network (Docker network \"none\")", l.Attrs().Name))
		}
	}
	return a, tdev, link, v6off, nil
}

// tunDevice is prepare's mkdev for a TUN device.
func tunDevice(ifname string, mtu int) func(*attachment) (tun.Device, error) {
	return func(a *attachment) (tun.Device, error) { return createTUN(a.ns, ifname, mtu) }
}

// Detach removes a host's tunnel: the device closes, its TUN and routes vanish with it,
// and the container is left with loopback only. Detaching a host without a tunnel is a
// no-op.
func (m *Manager) Detach(ctx context.Context, hostID string) error {
	hl := m.hostLock(hostID)
	hl.Lock()
	defer hl.Unlock()
	m.mu.Lock()
	a := m.hosts[hostID]
	m.mu.Unlock()
	if a == nil {
		return nil
	}
	err := m.detachLocked(a)
	m.log.Info("egress tunnel detached", "host", hostID, "egress", a.egressID)
	return err
}

func (m *Manager) detachLocked(a *attachment) error {
	m.mu.Lock()
	if m.hosts[a.hostID] == a {
		delete(m.hosts, a.hostID)
	}
	m.mu.Unlock()
	return a.close()
}

// close releases everything; the device must be gone afterwards (a TUN goes when its last
// file descriptor closes, else it is deleted; a kernel WireGuard link is deleted).
func (a *attachment) close() error {
	var err error
	if a.dev != nil {
		a.dev.Close() // idempotent; dev stays set for concurrent Status readers.
	}
	if a.proxy != nil {
		a.proxy.Close() // idempotent, likewise
	}
	if a.wgc != nil {
		a.wgc.Close() // likewise
	}
	if a.h != nil && a.index > 0 {
		deadline := time.Now().Add(2 * time.Second)
		if a.kind == KindWireGuardKernel {
			deadline = time.Time{} // nothing else removes a kernel link
		}
		for {
			l, lerr := a.h.LinkByIndex(a.index)
			if lerr != nil {
				break
			}
			if time.Now().After(deadline) {
				if derr := a.h.LinkDel(l); derr != nil {
					err = fmt.Errorf("remove %s: %w", a.ifname, derr)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if a.h != nil {
		a.h.Close()
		a.h = nil
	}
	if a.ns.IsOpen() {
		a.ns.Close()
		a.ns = -1
	}
	return err
}

// removeStaleTunnels deletes WireGuard or TUN devices named like this room's tunnels from a
// container's namespace.
func removeStaleTunnels(h *netlink.Handle) error {
	for _, name := range []string{InterfaceName, ProxyInterfaceName} {
		l, err := h.LinkByName(name)
		if err != nil {
			continue // not there
		}
		if t := l.Type(); t != "wireguard" && t != "tuntap" {
			continue // not ours: refused by the interface check
		}
		if err := h.LinkDel(l); err != nil {
			return fmt.Errorf("remove stale %s (%s) from the container: %w", name, l.Type(), err)
		}
	}
	return nil
}
