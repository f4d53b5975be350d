package tunnel

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
)

// nsTUN is a TUN device living in another network namespace. wireguard-go's native TUN
// looks its MTU up by name in the namespace of whichever thread asks, which is the server's;
// this looks it up, by index, inside the namespace the device lives in.
type nsTUN struct {
	tun.Device
	h     *netlink.Handle
	index int
	mtu   int // fallback
}

func (t *nsTUN) MTU() (int, error) {
	if l, err := t.h.LinkByIndex(t.index); err == nil && l.Attrs().MTU > 0 {
		return l.Attrs().MTU, nil
	}
	return t.mtu, nil
}

// NetnsBind is a WireGuard bind whose sockets are always opened inside a given network
// namespace, whichever thread wireguard-go opens them from (it reopens the bind on every
// link up). The server itself uses conn.NewDefaultBind(); this is for peers living in a
// namespace, e.g. a provider simulated in tests.
type NetnsBind struct {
	conn.Bind
	Netns netns.NsHandle
}

// Open implements conn.Bind.
func (b *NetnsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	nsErr := nsthread.Run(b.Netns, func() error {
		fns, actual, err = b.Bind.Open(port)
		return nil
	})
	if nsErr != nil {
		if err == nil {
			b.Bind.Close()
		}
		return nil, 0, nsErr
	}
	return fns, actual, err
}

// CreateTUNInNetns creates a TUN device named name inside target. The returned netlink
// handle talks to target; the caller closes both.
func CreateTUNInNetns(target netns.NsHandle, name string, mtu int) (tun.Device, *netlink.Handle, error) {
	var h *netlink.Handle
	if err := nsthread.Run(target, func() (err error) { h, err = netlink.NewHandle(); return err }); err != nil {
		if h != nil {
			h.Close()
		}
		return nil, nil, fmt.Errorf("netlink: %w", err)
	}
	dev, err := createTUN(target, name, mtu)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return dev, h, nil
}

// createTUN creates a TUN device named name inside target.
func createTUN(target netns.NsHandle, name string, mtu int) (tun.Device, error) {
	var dev tun.Device
	err := nsthread.Run(target, func() (err error) {
		if dev, err = tun.CreateTUN(name, mtu); err != nil {
			return fmt.Errorf("create tun %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		return nil, err
	}
	return dev, nil
}

// sameNamespaceLink reports whether /proc/<pid>/ns/<kind> is the server's own namespace.
func sameNamespace(pid int, kind string) (bool, error) {
	a, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		return false, err
	}
	b, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", os.Getpid(), kind))
	if err != nil {
		return false, err
	}
	return a == b, nil
}

// ipv6Disabled reads net.ipv6.conf.all.disable_ipv6 of the namespace of the calling
// thread (call it inside nsthread.Run).
func ipv6Disabled() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	if errors.Is(err, os.ErrNotExist) {
		return true // no IPv6 in this kernel
	}
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
