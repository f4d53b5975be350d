package tunnel

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// attachWireGuard gives the container a WireGuard tunnel: kernel WireGuard or
// wireguard-go, with the same link configuration and resolver either way.
func (m *Manager) attachWireGuard(hostID string, pid int, egressID string, cfg *wgConfig, ep netip.AddrPort, uapi string, kernel bool) (_ *attachment, err error) {
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

func (m *Manager) deviceLogger(hostID string) *device.Logger {
	return &device.Logger{
		Verbosef: func(string, ...any) {},
		Errorf: func(format string, args ...any) {
			m.log.Debug("wireguard: "+fmt.Sprintf(format, args...), "host", hostID)
		},
	}
}

// userspaceStatus fills st from a wireguard-go device: its peer's endpoint, last
// handshake and byte counters.
func userspaceStatus(dev *device.Device, st *Status) {
	s, err := dev.IpcGet()
	if err != nil {
		return
	}
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
