package tunnel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// DefaultMTU is the MTU of a tunnel device unless Config.MTU says otherwise.
const DefaultMTU = 1420

// InterfaceName is the name of the tunnel device inside a container.
const InterfaceName = "wg0"

// Config configures a Manager.
type Config struct {
	// CheckURL is fetched through the tunnel by the connectivity check (any HTTP answer
	// passes). Defaults to CheckServerURL, else DefaultCheckURL. Without CheckServerURL it
	// is also the IP-echo URL of the exit_ip check: its body must be the caller's IP.
	CheckURL string
	// CheckServerURL is the base URL of a CheckService reachable from the internet: GET /
	// answers the exit IP, GET /dns-log?name= the resolvers that asked for a name. Empty:
	// Test's exit_ip check asks CheckURL and its dns_leak check is skipped; CheckHost
	// checks nothing (app treats that as unconfigured).
	CheckServerURL string
	// CheckDNSZone is the zone the CheckService is authoritative for; empty skips Test's
	// dns_leak check.
	CheckDNSZone string
	// TestTimeout bounds Test and CheckHost as a whole, the three checks' budgets scaled
	// to it; 0 means the package's TestTimeout (30 s). Tests shorten it.
	TestTimeout time.Duration
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
	if cfg.CheckURL == "" {
		cfg.CheckURL = DefaultCheckURL
	}
	if cfg.TestTimeout <= 0 {
		cfg.TestTimeout = TestTimeout
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
	if a.dev != nil {
		userspaceStatus(a.dev, &st)
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
