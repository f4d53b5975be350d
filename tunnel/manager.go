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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// DefaultMTU is the MTU of a tunnel device unless Config.MTU says otherwise.
const DefaultMTU = 1420

// InterfaceName is the name of the tunnel device inside a container.
const InterfaceName = "wg0"

// Config configures a Manager.
type Config struct {
	// CheckURL is fetched through the tunnel by the connectivity check (any HTTP answer
	// passes). Defaults to CheckServerURL.
	CheckURL string
	// CheckServerURL is the base URL of a CheckService reachable from the internet: GET /
	// answers the exit IP, GET /dns-log?name= the resolvers that asked for a name.
	CheckServerURL string
	// CheckDNSZone is the zone the CheckService is authoritative for.
	CheckDNSZone string
	// MTU of WireGuard tunnel devices; 0 means DefaultMTU. (Proxy TUNs use ProxyMTU.)
	MTU int
	// ProxyDNSServer is the resolver of containers behind a proxy egress: their
	// resolv.conf names it, and their DNS queries to it (UDP port 53) are answered through
	// the proxy. Invalid means DefaultProxyDNSServer.
	ProxyDNSServer netip.Addr
	// WireGuardMode chooses how WireGuard tunnels run: WireGuardAuto ("" too) in the
	// kernel when it has WireGuard (see KernelWireGuard), else wireguard-go in this
	// process; WireGuardKernel or WireGuardUserspace force one (kernel makes Attach fail
	// when the kernel has none). Test always runs wireguard-go in this process.
	WireGuardMode string
	Logger        *slog.Logger
}

// Manager runs the egress tunnels of containers in the server process and implements
// app.Tunnel. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	hosts   map[string]*attachment
	hostMus map[string]*sync.Mutex
	closed  bool

	fallbackOnce sync.Once // logs once that kernel WireGuard is unavailable
}

var _ app.Tunnel = (*Manager)(nil)

// NewManager returns a Manager.
func NewManager(cfg Config) *Manager {
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.CheckURL == "" {
		cfg.CheckURL = cfg.CheckServerURL
	}
	if !cfg.ProxyDNSServer.IsValid() {
		cfg.ProxyDNSServer = DefaultProxyDNSServer
	}
	cfg.ProxyDNSServer = cfg.ProxyDNSServer.Unmap()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Manager{cfg: cfg, log: log, hosts: map[string]*attachment{}, hostMus: map[string]*sync.Mutex{}}
}

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

// Status is the state of a host's tunnel.
type Status struct {
	HostID     string    `json:"host_id"`
	Attached   bool      `json:"attached"`
	EgressID   string    `json:"egress_id,omitempty"`
	Pid        int       `json:"pid,omitempty"`
	Interface  string    `json:"interface,omitempty"`
	Kind       string    `json:"kind,omitempty"` // KindWireGuardKernel, KindWireGuardGo or KindProxy
	AttachedAt time.Time `json:"attached_at,omitempty"`
	// Endpoint is the WireGuard peer's or the proxy server's address.
	Endpoint string `json:"endpoint,omitempty"`
	// LastHandshake is the peer's last WireGuard handshake or, for a proxy, the last
	// connection the proxy server took.
	LastHandshake time.Time `json:"last_handshake,omitempty"`
	// RxBytes and TxBytes count what came in from and went out to the tunnel: for
	// WireGuard the bytes exchanged with the peer, for a proxy the payload that came back
	// through the proxy (rx) and the container's packets that entered the TUN (tx), so
	// with a dead proxy tx grows and rx does not.
	RxBytes uint64 `json:"rx_bytes"`
	TxBytes uint64 `json:"tx_bytes"`
}

func (m *Manager) hostLock(hostID string) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.hostMus[hostID]
	if !ok {
		l = &sync.Mutex{}
		m.hostMus[hostID] = l
	}
	return l
}

func (m *Manager) deviceLogger(hostID string) *device.Logger {
	return &device.Logger{
		Verbosef: func(string, ...any) {},
		Errorf: func(format string, args ...any) {
			m.log.Debug("wireguard: "+fmt.Sprintf(format, args...), "host", hostID)
		},
	}
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
			return m.attach(hostID, pid, e.ID, cfg, ep, cfg.uapi(ep), kernel)
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

// attach gives the container a WireGuard tunnel: kernel WireGuard or wireguard-go, with
// the same link configuration and resolver either way.
func (m *Manager) attach(hostID string, pid int, egressID string, cfg *wgConfig, ep netip.AddrPort, uapi string, kernel bool) (_ *attachment, err error) {
	mkdev := tunDevice(InterfaceName, m.cfg.MTU)
	if kernel {
		mkdev = func(a *attachment) (tun.Device, error) { return nil, kernelDevice(a, InterfaceName, cfg, ep) }
	}
	a, tdev, link, v6off, err := m.prepare(hostID, pid, egressID, InterfaceName, cfg.dns.IsValid(), mkdev)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if tdev != nil {
		// From here the device owns tdev: a.close closes it.
		a.kind = KindWireGuardGo
		a.dev = device.NewDevice(&nsTUN{Device: tdev, h: a.h, index: a.index, mtu: m.cfg.MTU}, conn.NewDefaultBind(), m.deviceLogger(hostID))
		if err := a.dev.IpcSet(uapi); err != nil {
			return nil, fmt.Errorf("configure wireguard: %w", err)
		}
	}
	if err := configureLink(a.h, link, cfg.addrs, m.cfg.MTU, v6off); err != nil {
		return nil, err
	}
	if a.dev != nil {
		if err := a.dev.Up(); err != nil {
			return nil, fmt.Errorf("wireguard up: %w", err)
		}
	}
	if cfg.dns.IsValid() {
		if err := writeResolvConf(pid, cfg.dns); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

var (
	default4 = netip.MustParsePrefix("0.0.0.0/0")
	default6 = netip.MustParsePrefix("::/0")
)

// hasFamily reports whether addrs have an address of the family (IPv6 or IPv4).
func hasFamily(addrs []netip.Prefix, v6 bool) bool {
	for _, p := range addrs {
		if p.Addr().Is6() == v6 && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}

// configureLink addresses the tunnel device, brings it up and routes everything into it:
// the default route of each family it has an address of, and an unreachable default for
// the other family.
func configureLink(h *netlink.Handle, link netlink.Link, addrs []netip.Prefix, mtu int, v6off bool) error {
	name := link.Attrs().Name
	for _, p := range addrs {
		if p.Addr().Is6() && v6off {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", p, name, err)
		}
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("mtu of %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	idx := link.Attrs().Index
	for _, fam := range []struct {
		dst netip.Prefix
		v6  bool
	}{{default4, false}, {default6, true}} {
		if fam.v6 && v6off {
			continue // IPv6 is off in the container: nothing can go anywhere.
		}
		r := &netlink.Route{Dst: ipNet(fam.dst)}
		if hasFamily(addrs, fam.v6) {
			r.LinkIndex = idx
			if !fam.v6 {
				r.Scope = netlink.SCOPE_LINK
			}
		} else {
			// No address of this family in the tunnel: the family goes nowhere rather
			// than around it.
			r.Type = unix.RTN_UNREACHABLE
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("default route %s: %w", fam.dst, err)
		}
	}
	return nil
}

// writeResolvConf makes dns the only resolver of the container.
func writeResolvConf(pid int, dns netip.Addr) error {
	f, err := openContainerFile(pid, "etc/resolv.conf", unix.O_WRONLY|unix.O_CREAT, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if own, err := os.Stat("/etc/resolv.conf"); err == nil && os.SameFile(own, st) {
		return errors.New("container /etc/resolv.conf is the server's own: refusing to rewrite it")
	}
	content := "# written by cloud-cli-proxy: DNS goes through the egress tunnel\nnameserver " + dns.String() + "\n"
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("container /etc/resolv.conf: %w", err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		return fmt.Errorf("container /etc/resolv.conf: %w", err)
	}
	return nil
}

// openContainerFile opens the regular file at path (relative, e.g. "etc/resolv.conf") in
// the container of process pid, with symlinks resolved inside the container's root, so a
// container cannot point it at a file of the server (nor, being non-blocking, make the
// server wait on a FIFO).
func openContainerFile(pid int, path string, flags int, mode uint64) (*os.File, error) {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("container root: %w", err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, path, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK),
		Mode:    mode,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("container /%s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("container /%s is not a regular file", path)
	}
	return f, nil
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

// Status reports a host's tunnel.
func (m *Manager) Status(hostID string) Status {
	m.mu.Lock()
	a := m.hosts[hostID]
	m.mu.Unlock()
	st := Status{HostID: hostID}
	if a == nil {
		return st
	}
	st.Attached = true
	st.EgressID, st.Pid, st.Interface, st.Kind, st.AttachedAt = a.egressID, a.pid, a.ifname, a.kind, a.at
	if p := a.proxy; p != nil {
		st.Endpoint = a.endpoint
		st.RxBytes, st.TxBytes = p.rx.Load(), p.tx.Load()
		if ns := p.lastDial.Load(); ns != 0 {
			st.LastHandshake = time.Unix(0, ns)
		}
		return st
	}
	if a.wgc != nil {
		kernelStatus(a.wgc, a.ifname, &st)
		return st
	}
	dev := a.dev
	if dev == nil {
		return st
	}
	if s, err := dev.IpcGet(); err == nil {
		var sec, nsec int64
		for _, line := range strings.Split(s, "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "endpoint":
				st.Endpoint = v
			case "last_handshake_time_sec":
				sec, _ = strconv.ParseInt(v, 10, 64)
			case "last_handshake_time_nsec":
				nsec, _ = strconv.ParseInt(v, 10, 64)
			case "rx_bytes":
				st.RxBytes, _ = strconv.ParseUint(v, 10, 64)
			case "tx_bytes":
				st.TxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		}
		if sec != 0 || nsec != 0 {
			st.LastHandshake = time.Unix(sec, nsec)
		}
	}
	return st
}

// Close detaches every tunnel.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	ids := make([]string, 0, len(m.hosts))
	for id := range m.hosts {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, m.Detach(context.Background(), id))
	}
	return errors.Join(errs...)
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
