package tunnel

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
)

// WireGuard implementations (Config.WireGuardMode).
const (
	WireGuardAuto      = "auto"      // the kernel's when it has one, else wireguard-go
	WireGuardKernel    = "kernel"    // the kernel's, or Attach fails
	WireGuardUserspace = "userspace" // wireguard-go in this process
)

// Kinds of tunnel (Status.Kind).
const (
	KindWireGuardKernel = "wireguard-kernel"
	KindWireGuardGo     = "wireguard-go"
	KindProxy           = "proxy"
)

var kernelWG struct {
	once sync.Once
	err  error
}

// KernelWireGuard reports whether the kernel can run WireGuard tunnels: nil when it can,
// else why not (typically: no wireguard module). It creates and deletes a throwaway
// wireguard link in the server's namespace, once per process.
func KernelWireGuard() error {
	kernelWG.once.Do(func() { kernelWG.err = probeKernelWireGuard() })
	return kernelWG.err
}

func probeKernelWireGuard() error {
	link := &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: tempLinkName("ccpwgp")}}
	if err := netlink.LinkAdd(link); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("the kernel has no WireGuard: creating a wireguard link: %w (the wireguard module is not loaded and the kernel could not load it)", err)
		}
		return fmt.Errorf("creating a wireguard link: %w", err)
	}
	if l, err := netlink.LinkByName(link.Name); err == nil {
		netlink.LinkDel(l)
	}
	return nil
}

// tempLinkName is prefix and random hex, 15 bytes at most (IFNAMSIZ).
func tempLinkName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// kernelWireGuard tells whether Attach uses kernel WireGuard, per Config.WireGuardMode.
func (m *Manager) kernelWireGuard() (bool, error) {
	switch m.cfg.WireGuardMode {
	case "", WireGuardAuto:
		err := KernelWireGuard()
		if err != nil {
			m.fallbackOnce.Do(func() { m.log.Info("kernel WireGuard unavailable: tunnels use wireguard-go", "reason", err) })
		}
		return err == nil, nil
	case WireGuardKernel:
		if err := KernelWireGuard(); err != nil {
			return false, fmt.Errorf("WireGuard mode %q: %w", WireGuardKernel, err)
		}
		return true, nil
	case WireGuardUserspace:
		return false, nil
	}
	return false, fmt.Errorf("WireGuard mode %q is none of %s, %s, %s", m.cfg.WireGuardMode, WireGuardAuto, WireGuardKernel, WireGuardUserspace)
}

// kernelDevice gives a (prepare'd) attachment a kernel WireGuard link named ifname: it is
// created and configured in the server's namespace, so the kernel opens its UDP socket
// there, then moved into the container's. a.wgc is left open in the container's
// namespace for Status. The link is down and unaddressed: the caller configures it.
func kernelDevice(a *attachment, ifname string, cfg *wgConfig, ep netip.AddrPort) error {
	a.kind = KindWireGuardKernel
	kc, err := cfg.kernelConfig(ep)
	if err != nil {
		return err
	}
	tmp := tempLinkName("ccpwg")
	link := &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: tmp}}
	if err := netlink.LinkAdd(link); err != nil {
		return fmt.Errorf("create kernel wireguard link: %w", err)
	}
	moved := false
	defer func() {
		if !moved {
			if l, err := netlink.LinkByName(tmp); err == nil {
				netlink.LinkDel(l)
			}
		}
	}()
	wgc, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wgctrl: %w", err)
	}
	err = wgc.ConfigureDevice(tmp, kc)
	wgc.Close()
	if err != nil {
		return fmt.Errorf("configure wireguard: %w", err)
	}
	l, err := netlink.LinkByName(tmp)
	if err != nil {
		return fmt.Errorf("find %s: %w", tmp, err)
	}
	if err := netlink.LinkSetNsFd(l, int(a.ns)); err != nil {
		return fmt.Errorf("move %s into the container: %w", tmp, err)
	}
	moved = true
	if l, err = a.h.LinkByName(tmp); err != nil {
		return fmt.Errorf("find %s in the container: %w", tmp, err)
	}
	a.index = l.Attrs().Index // from here a.close deletes it
	if err := a.h.LinkSetName(l, ifname); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, ifname, err)
	}
	return nsthread.Run(a.ns, func() error {
		if a.wgc, err = wgctrl.New(); err != nil {
			return fmt.Errorf("wgctrl in the container: %w", err)
		}
		return nil
	})
}

// kernelConfig is the device configuration of uapi for wgctrl.
func (c *wgConfig) kernelConfig(ep netip.AddrPort) (wgtypes.Config, error) {
	key := func(h string) (*wgtypes.Key, error) {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, err
		}
		k, err := wgtypes.NewKey(b)
		return &k, err
	}
	priv, err := key(c.privateKey)
	if err != nil {
		return wgtypes.Config{}, err
	}
	pub, err := key(c.publicKey)
	if err != nil {
		return wgtypes.Config{}, err
	}
	keepalive := PersistentKeepalive * time.Second
	peer := wgtypes.PeerConfig{
		PublicKey: *pub, Endpoint: net.UDPAddrFromAddrPort(ep),
		PersistentKeepaliveInterval: &keepalive, ReplaceAllowedIPs: true,
	}
	if c.presharedKey != "" {
		if peer.PresharedKey, err = key(c.presharedKey); err != nil {
			return wgtypes.Config{}, err
		}
	}
	for _, p := range c.allowed {
		peer.AllowedIPs = append(peer.AllowedIPs, *ipNet(p))
	}
	return wgtypes.Config{PrivateKey: priv, ReplacePeers: true, Peers: []wgtypes.PeerConfig{peer}}, nil
}

// kernelStatus fills st from the kernel WireGuard device ifname.
func kernelStatus(wgc *wgctrl.Client, ifname string, st *Status) {
	d, err := wgc.Device(ifname)
	if err != nil || d.Type != wgtypes.LinuxKernel || len(d.Peers) == 0 {
		return
	}
	p := d.Peers[0]
	if p.Endpoint != nil {
		st.Endpoint = p.Endpoint.String()
	}
	st.LastHandshake = p.LastHandshakeTime
	st.RxBytes, st.TxBytes = uint64(p.ReceiveBytes), uint64(p.TransmitBytes)
}
