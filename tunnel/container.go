package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
