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
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
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
	// MTU of tunnel devices; 0 means DefaultMTU.
	MTU    int
	Logger *slog.Logger
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
	dev              *device.Device
	h                *netlink.Handle
	ns               netns.NsHandle
	index            int
	at               time.Time
}

// Status is the state of a host's tunnel.
type Status struct {
	HostID        string    `json:"host_id"`
	Attached      bool      `json:"attached"`
	EgressID      string    `json:"egress_id,omitempty"`
	Pid           int       `json:"pid,omitempty"`
	Interface     string    `json:"interface,omitempty"`
	AttachedAt    time.Time `json:"attached_at,omitempty"`
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitempty"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
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
// tunnel of e: a WireGuard device run by this process whose TUN lives in the container's
// network namespace, with the container's only routes (IPv4 and IPv6 default) into it or,
// for a family the tunnel has no address of, unreachable. The container's resolver becomes
// wg_dns_server. The container must have no network but loopback (Docker network "none"):
// Attach refuses a namespace with any other interface, and the server's own namespace.
// Attaching a host again replaces its tunnel, or does nothing if nothing changed.
func (m *Manager) Attach(ctx context.Context, hostID string, pid int, e app.EgressIP) error {
	if hostID == "" {
		return errors.New("tunnel attach: empty host id")
	}
	if pid <= 0 {
		return fmt.Errorf("tunnel attach %s: no container process (pid %d): is it running?", hostID, pid)
	}
	cfg, err := parseWG(e)
	if err != nil {
		return err
	}
	ep, err := cfg.endpoint(ctx)
	if err != nil {
		return fmt.Errorf("tunnel attach %s: %w", hostID, err)
	}
	uapi := cfg.uapi(ep)
	key := fmt.Sprintf("%d\x00%s\x00%s\x00%v\x00%s", pid, uapi, e.WGPeerAddress, cfg.dns, e.ID)

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

	a, err := m.attach(ctx, hostID, pid, e.ID, cfg, uapi)
	if err != nil {
		return fmt.Errorf("tunnel attach %s: %w", hostID, err)
	}
	a.key = key
	m.mu.Lock()
	m.hosts[hostID] = a
	m.mu.Unlock()
	m.log.Info("egress tunnel attached", "host", hostID, "egress", e.ID, "pid", pid, "endpoint", ep.String())
	return nil
}

func (a *attachment) alive() bool {
	_, err := a.h.LinkByIndex(a.index)
	return err == nil
}

func (m *Manager) attach(ctx context.Context, hostID string, pid int, egressID string, cfg *wgConfig, uapi string) (_ *attachment, err error) {
	target, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, fmt.Errorf("netns of pid %d: %w", pid, err)
	}
	a := &attachment{hostID: hostID, egressID: egressID, pid: pid, ns: target, at: time.Now()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if same, err := sameNetns(target); err != nil || same {
		if err == nil {
			err = errors.New("the process is in the server's own network namespace")
		}
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	if cfg.dns.IsValid() {
		if same, err := sameNamespace(pid, "mnt"); err != nil || same {
			if err == nil {
				err = errors.New("the process shares the server's mount namespace: refusing to rewrite the server's resolv.conf")
			}
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
	}
	var v6off bool
	if err := inNetns(target, func() error { v6off = ipv6Disabled(); return nil }); err != nil {
		return nil, err
	}

	tdev, h, err := CreateTUNInNetns(target, InterfaceName, m.cfg.MTU)
	if err != nil {
		return nil, err
	}
	a.h = h
	link, err := h.LinkByName(InterfaceName)
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("find %s in the container: %w", InterfaceName, err)
	}
	a.index = link.Attrs().Index
	// The container must have nothing but loopback and the tunnel: anything else would be
	// a way around it.
	links, err := h.LinkList()
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("list container links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Index != a.index && l.Attrs().Flags&net.FlagLoopback == 0 {
			tdev.Close()
			return nil, fmt.Errorf("container network namespace has interface %q: egress tunnels need a container without network (Docker network \"none\")", l.Attrs().Name)
		}
	}

	a.dev = device.NewDevice(&nsTUN{Device: tdev, h: h, index: a.index, mtu: m.cfg.MTU}, conn.NewDefaultBind(), m.deviceLogger(hostID))
	if err := a.dev.IpcSet(uapi); err != nil {
		return nil, fmt.Errorf("configure wireguard: %w", err)
	}
	if err := configureLink(h, link, cfg, m.cfg.MTU, v6off); err != nil {
		return nil, err
	}
	if err := a.dev.Up(); err != nil {
		return nil, fmt.Errorf("wireguard up: %w", err)
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

// configureLink addresses the tunnel device, brings it up and routes everything into it.
func configureLink(h *netlink.Handle, link netlink.Link, cfg *wgConfig, mtu int, v6off bool) error {
	for _, p := range cfg.addrs {
		if p.Addr().Is6() && v6off {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", p, InterfaceName, err)
		}
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("mtu of %s: %w", InterfaceName, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", InterfaceName, err)
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
		if cfg.has(fam.v6) {
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

// writeResolvConf makes dns the only resolver of the container. The file is opened
// through the container's root with symlinks resolved inside it, so a container cannot
// point it at a file of the server.
func writeResolvConf(pid int, dns netip.Addr) error {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container root: %w", err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, "etc/resolv.conf", &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_CLOEXEC | unix.O_NOCTTY,
		Mode:    0o644,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("container /etc/resolv.conf: %w", err)
	}
	f := os.NewFile(uintptr(fd), "resolv.conf")
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New("container /etc/resolv.conf is not a regular file")
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

// close releases everything; the TUN must be gone afterwards (it goes when its last file
// descriptor closes; if it lingers it is deleted).
func (a *attachment) close() error {
	var err error
	if a.dev != nil {
		a.dev.Close() // idempotent; dev stays set for concurrent Status readers.
	}
	if a.h != nil && a.index > 0 {
		deadline := time.Now().Add(2 * time.Second)
		for {
			l, lerr := a.h.LinkByIndex(a.index)
			if lerr != nil {
				break
			}
			if time.Now().After(deadline) {
				if derr := a.h.LinkDel(l); derr != nil {
					err = fmt.Errorf("remove %s: %w", InterfaceName, derr)
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
	st.EgressID, st.Pid, st.Interface, st.AttachedAt = a.egressID, a.pid, InterfaceName, a.at
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
