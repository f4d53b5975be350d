package tunnel

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/nsthread"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// The lab:
//
//	server (the test process's namespace) --veth 10.x.y.1/30 <-> 10.x.y.2/30-- provider ns
//	provider ns: WireGuard peer (wireguard-go, TUN "wgp" 10.66.0.1/24, UDP 10.x.y.2:51820),
//	             SNAT of 10.66.0.0/24 to 203.0.113.10 toward
//	internet ns: 203.0.113.1, check service on :80 (HTTP) and :53 (DNS, zone check.test)
//	container:   a namespace with only lo holding a sleeping process (or a Docker container
//	             with --network none), given its tunnel by Manager.Attach.
const (
	labExitIP   = "203.0.113.10"
	labInetIP   = "203.0.113.1"
	labZone     = "check.test"
	labPeerAddr = "10.66.0.2/32"
	labWGPort   = 51820
)

// requireLab skips (or, with CI=true, fails) unless the lab can be built.
func requireLab(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (iproute2)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	_, nftErr := exec.LookPath("nft")
	_, iptErr := exec.LookPath("iptables")
	if nftErr != nil && iptErr != nil {
		missing = append(missing, "nft (nftables) or iptables")
	}
	if len(missing) > 0 {
		skipOrFail(t, "tunnel lab needs: "+strings.Join(missing, ", "))
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := shErr(nil, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func shErr(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type wgKey struct{ priv, pub string }

func newKey(t *testing.T) wgKey {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return wgKey{base64.StdEncoding.EncodeToString(k.Bytes()), base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())}
}

func b64hex(t *testing.T, k string) string {
	h, err := keyHex("k", k)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type lab struct {
	id         string
	prov, inet string // namespace names
	provNS     netns.NsHandle
	inetNS     netns.NsHandle
	endpoint   netip.AddrPort
	provKey    wgKey
	clientKey  wgKey
	psk        string
	provDev    *device.Device
	svc        *CheckService
}

func openNetns(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func addNetns(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { shErr(nil, "ip", "netns", "del", name) })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return openNetns(t, name)
}

// freeSubnet picks a /30 in 10.200.0.0/13 that no route of the server's namespace touches.
func freeSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 0}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 64; try++ {
		b := make([]byte, 3)
		rand.Read(b)
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + b[0]%8, b[1], b[2] &^ 3}), 30)
		clash := false
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			ones, _ := r.Dst.Mask.Size()
			if ones == 0 {
				continue
			}
			ra, _ := netip.AddrFromSlice(r.Dst.IP)
			rp := netip.PrefixFrom(ra.Unmap(), ones)
			if rp.Overlaps(cand) {
				clash = true
				break
			}
		}
		if !clash {
			return cand
		}
	}
	t.Fatal("no free /30 in 10.200.0.0/13")
	return netip.Prefix{}
}

func writeSysctlIn(t *testing.T, h netns.NsHandle, path, val string) {
	t.Helper()
	if err := nsthread.Run(h, func() error { return os.WriteFile(path, []byte(val), 0o644) }); err != nil {
		t.Fatalf("sysctl %s: %v", path, err)
	}
}

// testLogger routes wireguard and service logs to t.Log while the test runs.
type testWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newTestWriter(t *testing.T) io.Writer {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return w
}

func newLab(t *testing.T) *lab {
	requireLab(t)
	id := randHex(3)
	l := &lab{id: id, prov: "cctp" + id, inet: "ccti" + id, provKey: newKey(t), clientKey: newKey(t)}
	psk := make([]byte, 32)
	rand.Read(psk)
	l.psk = base64.StdEncoding.EncodeToString(psk)

	l.provNS = addNetns(t, l.prov)
	l.inetNS = addNetns(t, l.inet)

	// server <-> provider
	sub := freeSubnet(t)
	srvIP := sub.Addr().Next()
	provIP := srvIP.Next()
	hostIf, provIf := "ccv"+id+"h", "ccv"+id+"p"
	sh(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", provIf)
	t.Cleanup(func() { shErr(nil, "ip", "link", "del", hostIf) })
	sh(t, "ip", "link", "set", provIf, "netns", l.prov)
	sh(t, "ip", "addr", "add", netip.PrefixFrom(srvIP, 30).String(), "dev", hostIf)
	sh(t, "ip", "link", "set", hostIf, "up")
	sh(t, "ip", "-n", l.prov, "addr", "add", netip.PrefixFrom(provIP, 30).String(), "dev", provIf)
	sh(t, "ip", "-n", l.prov, "link", "set", provIf, "up")
	l.endpoint = netip.AddrPortFrom(provIP, labWGPort)

	// provider <-> internet
	provOut, inetIf := "cce"+id+"p", "cce"+id+"i"
	sh(t, "ip", "-n", l.prov, "link", "add", provOut, "type", "veth", "peer", "name", inetIf, "netns", l.inet)
	sh(t, "ip", "-n", l.prov, "addr", "add", labExitIP+"/24", "dev", provOut)
	sh(t, "ip", "-n", l.prov, "link", "set", provOut, "up")
	sh(t, "ip", "-n", l.inet, "addr", "add", labInetIP+"/24", "dev", inetIf)
	sh(t, "ip", "-n", l.inet, "link", "set", inetIf, "up")
	writeSysctlIn(t, l.provNS, "/proc/sys/net/ipv4/ip_forward", "1")
	nat := fmt.Sprintf("table ip ccnat {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  ip saddr 10.66.0.0/24 oifname %q snat to %s\n }\n}\n", provOut, labExitIP)
	if _, err := exec.LookPath("nft"); err == nil {
		if out, err := shErr([]byte(nat), "ip", "netns", "exec", l.prov, "nft", "-f", "-"); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
	} else {
		sh(t, "ip", "netns", "exec", l.prov, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.66.0.0/24", "-o", provOut, "-j", "SNAT", "--to-source", labExitIP)
	}

	l.startProvider(t)
	l.startCheckService(t)
	return l
}

// startProvider runs the provider's WireGuard peer: TUN and UDP socket in the provider ns.
func (l *lab) startProvider(t *testing.T) {
	t.Helper()
	tdev, h, err := CreateTUNInNetns(l.provNS, "wgp", DefaultMTU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	link, err := h.LinkByName("wgp")
	if err != nil {
		tdev.Close()
		t.Fatal(err)
	}
	idx := link.Attrs().Index
	w := newTestWriter(t)
	logf := func(f string, a ...any) { fmt.Fprintf(w, "provider: "+f+"\n", a...) }
	dev := device.NewDevice(&nsTUN{Device: tdev, h: h, index: idx, mtu: DefaultMTU},
		&NetnsBind{Bind: conn.NewDefaultBind(), Netns: l.provNS},
		&device.Logger{Verbosef: func(string, ...any) {}, Errorf: logf})
	l.provDev = dev
	t.Cleanup(dev.Close)
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\npreshared_key=%s\nallowed_ip=10.66.0.2/32\nallowed_ip=fd00:66::2/128\n",
		b64hex(t, l.provKey.priv), labWGPort, b64hex(t, l.clientKey.pub), b64hex(t, l.psk))
	if err := dev.IpcSet(uapi); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.66.0.1/24", "fd00:66::1/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = 0x80 // IFA_F_NODAD
		if err := h.AddrAdd(link, addr); err != nil {
			t.Fatalf("provider address %s: %v", a, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
}

// startCheckService runs the check service with its sockets in the internet ns.
func (l *lab) startCheckService(t *testing.T) {
	t.Helper()
	var (
		hl, tl net.Listener
		pc     net.PacketConn
	)
	err := nsthread.Run(l.inetNS, func() error {
		var err error
		if hl, err = net.Listen("tcp", labInetIP+":80"); err != nil {
			return err
		}
		if pc, err = net.ListenPacket("udp", labInetIP+":53"); err != nil {
			return err
		}
		tl, err = net.Listen("tcp", labInetIP+":53")
		return err
	})
	if err != nil {
		for _, c := range []io.Closer{hl, tl, pc} {
			if c != nil && !isNilCloser(c) {
				c.Close()
			}
		}
		t.Fatalf("check service listeners: %v", err)
	}
	l.svc = &CheckService{Zone: labZone}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.svc.Serve(ctx, hl, pc, tl) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("check service: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("check service did not stop")
		}
	})
}

func isNilCloser(c io.Closer) bool {
	switch v := c.(type) {
	case net.Listener:
		return v == nil
	}
	return false
}

func (l *lab) egress(peerAddr string) app.EgressIP {
	return app.EgressIP{
		ID: "eg-" + l.id, Label: "lab", IPAddress: labExitIP, TunnelType: app.TunnelWireGuard,
		WGEndpoint: l.endpoint.String(), WGPublicKey: l.provKey.pub, WGPrivateKey: l.clientKey.priv,
		WGPresharedKey: l.psk, WGAllowedIPs: "0.0.0.0/0, ::/0", WGDNSServer: labInetIP, WGPeerAddress: peerAddr,
	}
}

func (l *lab) manager(t *testing.T) *Manager { return l.wgManager(t, "") }

// wgManager is manager with Config.WireGuardMode mode.
func (l *lab) wgManager(t *testing.T, mode string) *Manager {
	m := NewManager(Config{
		CheckURL: "http://" + labInetIP + "/", CheckServerURL: "http://" + labInetIP, CheckDNSZone: labZone,
		WireGuardMode: mode,
	})
	t.Cleanup(func() { m.Close() })
	return m
}

// container is a stand-in for a workspace container: a process in a namespace with only lo.
type container struct {
	pid  int
	name string
}

// newNetnsContainer starts `ip netns exec NS sleep 600`: its own network namespace and,
// because /etc/netns/NS exists, its own mount namespace with /etc/resolv.conf bound to
// /etc/netns/NS/resolv.conf (so the tunnel's DNS setting never touches the server's).
func newNetnsContainer(t *testing.T) *container {
	t.Helper()
	name := "cctc" + randHex(3)
	addNetns(t, name)
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	want, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// ip execs sleep once both namespaces are in place.
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if strings.TrimSpace(string(comm)) == "sleep" && mnt != "" && mnt != want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container process %d never reached its namespaces", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &container{pid: pid, name: name}
}

const managedTestImage = "cloud-cli-proxy/managed-test:latest"

// newDockerContainer starts the managed test image with --network none, or skips.
func newDockerContainer(t *testing.T) *container {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		skipOrFail(t, "docker is not installed")
	}
	if out, err := shErr(nil, "docker", "image", "inspect", "--format", "{{.Id}}", managedTestImage); err != nil {
		skipOrFail(t, "test image "+managedTestImage+" is missing: "+strings.TrimSpace(out))
	}
	name := "cctd" + randHex(4)
	out, err := shErr(nil, "docker", "run", "-d", "--rm", "--name", name, "--network", "none", "--entrypoint", "sleep", managedTestImage, "600")
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() { shErr(nil, "docker", "rm", "-f", name) })
	out = sh(t, "docker", "inspect", "--format", "{{.State.Pid}}", name)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		t.Fatalf("container pid %q: %v", out, err)
	}
	return &container{pid: pid, name: name}
}

func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// dialIn dials from inside the container's network namespace.
func (c *container) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	h, err := netns.GetFromPid(c.pid)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return nsthread.Dial(ctx, h, network, addr)
}

// httpGet fetches url from inside the container.
func (c *container) httpGet(ctx context.Context, url string) (string, error) {
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: c.dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// resolver returns the container's nameserver, read from its own /etc/resolv.conf.
func (c *container) resolver(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/resolv.conf", c.pid))
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
			ns = append(ns, f[1])
		}
	}
	if len(ns) != 1 {
		t.Fatalf("container resolv.conf should name exactly one nameserver:\n%s", b)
	}
	return ns[0]
}

// lookupA resolves name from inside the container with its configured resolver.
func (c *container) lookupA(ctx context.Context, server, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var last error
	for ctx.Err() == nil {
		conn, err := c.dial(ctx, "udp", net.JoinHostPort(server, "53"))
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(time.Now().Add(time.Second))
		dc := &dns.Conn{Conn: conn}
		if err = dc.WriteMsg(m); err == nil {
			var r *dns.Msg
			if r, err = dc.ReadMsg(); err == nil {
				conn.Close()
				return r, nil
			}
		}
		conn.Close()
		last = err
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return nil, err
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return nil, last
}

// routes lists every route of the container namespace, all tables.
func (c *container) routes(t *testing.T) ([]netlink.Route, []netlink.Link) {
	t.Helper()
	h, err := netns.GetFromPid(c.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	rs, err := nh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := nh.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	return rs, ls
}

// v6Disabled reports whether IPv6 is switched off in the container's namespace.
func (c *container) v6Disabled(t *testing.T) bool {
	t.Helper()
	h, err := netns.GetFromPid(c.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var off bool
	if err := nsthread.Run(h, func() error { off = ipv6Disabled(); return nil }); err != nil {
		t.Fatal(err)
	}
	return off
}
