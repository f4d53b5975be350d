package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel/outbound"
)

// The lab. Every address lives inside namespaces the run creates (named with the run's id),
// so nothing is routed in the machine's own namespace and runs never collide:
//
//	server ns  "cbts<id>": the measuring process (tunnel.Manager, its WireGuard UDP sockets
//	                        and proxy connections), prov0 10.65.0.1/30
//	provider ns "cbtp<id>": srv0 10.65.0.2/30 (WireGuard peer on :51820, proxy servers),
//	                        wgp 10.66.0.1/24 (the peer's TUN), cbtb0 10.67.0.1/30 (the
//	                        baseline container's veth), inet0 203.0.113.10/24; forwards and
//	                        SNATs 10.66.0.0/24 and 10.67.0.0/30 to 203.0.113.10
//	internet ns "cbti<id>": prov0 203.0.113.1/24, the HTTP server on :80
//	tunnel container  "cbtc<id>" (or Docker "cbtd<id>t"): lo only, given its tunnel by
//	                        Manager.Attach
//	baseline container "cbtb<id>" (or Docker "cbtd<id>b"): eth0 10.67.0.2/30, default via
//	                        10.67.0.1: a plain veth to the same provider, same NAT
const (
	serverAddr   = "10.65.0.1/30"
	providerIP   = "10.65.0.2"
	wgNet        = "10.66.0.0/24"
	wgProvAddr   = "10.66.0.1/24"
	wgPeerAddr   = "10.66.0.2/32"
	vethNet      = "10.67.0.0/30"
	vethProvAddr = "10.67.0.1/30"
	vethContAddr = "10.67.0.2/30"
	vethGateway  = "10.67.0.1"
	exitIP       = "203.0.113.10"
	inetIP       = "203.0.113.1"
	wgPort       = 51820
	stateRoot    = "/run/ccp-bench-tunnel"
)

// lab is the run's namespaces, links, lab servers and containers. Everything it creates is
// first written to its state directory, so that close (and, after a crash, the next run's
// sweep) can remove it.
type lab struct {
	id       string
	log      io.Writer
	stateDir string

	server, prov, inet string // namespace names
	provNS, inetNS     netns.NsHandle

	mu      sync.Mutex
	closers []func() // lab servers and devices, closed last-in first-out
	boxes   []*box
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (l *lab) logf(format string, args ...any) {
	fmt.Fprintf(l.log, "tunnel-bench: "+format+"\n", args...)
}

// run runs a command (bounded) and returns its combined output.
func run(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// record notes a resource in the state directory before it is created.
func (l *lab) record(kind, name string) error {
	f, err := os.OpenFile(filepath.Join(l.stateDir, "resources"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %s\n", kind, name)
	return err
}

func (l *lab) onClose(f func()) {
	l.mu.Lock()
	l.closers = append(l.closers, f)
	l.mu.Unlock()
}

// newLab builds the namespaces, links and NAT. The caller must call close, also on error.
func newLab(id string, log io.Writer) (*lab, error) {
	l := &lab{id: id, log: log, server: "cbts" + id, prov: "cbtp" + id, inet: "cbti" + id,
		provNS: -1, inetNS: -1, stateDir: filepath.Join(stateRoot, id)}
	if err := os.MkdirAll(l.stateDir, 0o700); err != nil {
		return l, err
	}
	if err := os.WriteFile(filepath.Join(l.stateDir, "pid"), []byte(procIdentity(os.Getpid())), 0o600); err != nil {
		return l, err
	}
	for _, ns := range []string{l.server, l.prov, l.inet} {
		if err := l.addNetns(ns); err != nil {
			return l, err
		}
	}
	var err error
	if l.provNS, err = netns.GetFromName(l.prov); err != nil {
		return l, err
	}
	if l.inetNS, err = netns.GetFromName(l.inet); err != nil {
		return l, err
	}
	nft := fmt.Sprintf("table ip cbtnat {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  ip saddr { %s, %s } oifname \"inet0\" snat to %s\n }\n}\n", wgNet, vethNet, exitIP)
	steps := [][]string{
		{"ip", "-n", l.server, "link", "add", "prov0", "type", "veth", "peer", "name", "srv0", "netns", l.prov},
		{"ip", "-n", l.server, "addr", "add", serverAddr, "dev", "prov0"},
		{"ip", "-n", l.server, "link", "set", "prov0", "up"},
		{"ip", "-n", l.prov, "addr", "add", providerIP + "/30", "dev", "srv0"},
		{"ip", "-n", l.prov, "link", "set", "srv0", "up"},
		{"ip", "-n", l.prov, "link", "add", "inet0", "type", "veth", "peer", "name", "prov0", "netns", l.inet},
		{"ip", "-n", l.prov, "addr", "add", exitIP + "/24", "dev", "inet0"},
		{"ip", "-n", l.prov, "link", "set", "inet0", "up"},
		{"ip", "-n", l.inet, "addr", "add", inetIP + "/24", "dev", "prov0"},
		{"ip", "-n", l.inet, "link", "set", "prov0", "up"},
	}
	for _, s := range steps {
		if _, err := run(nil, s...); err != nil {
			return l, err
		}
	}
	if err := inNetns(l.provNS, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		return l, fmt.Errorf("ip_forward in the provider namespace: %w", err)
	}
	if _, err := exec.LookPath("nft"); err == nil {
		_, err = run([]byte(nft), "ip", "netns", "exec", l.prov, "nft", "-f", "-")
		if err != nil {
			return l, err
		}
	} else {
		for _, src := range []string{wgNet, vethNet} {
			if _, err := run(nil, "ip", "netns", "exec", l.prov, "iptables", "-t", "nat", "-A", "POSTROUTING",
				"-s", src, "-o", "inet0", "-j", "SNAT", "--to-source", exitIP); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

func (l *lab) addNetns(name string) error {
	if err := l.record("netns", name); err != nil {
		return err
	}
	if _, err := run(nil, "ip", "netns", "add", name); err != nil {
		return err
	}
	_, err := run(nil, "ip", "-n", name, "link", "set", "lo", "up")
	return err
}

// close stops the lab servers and containers and removes everything the run created.
func (l *lab) close() error {
	l.mu.Lock()
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	for _, b := range l.boxes {
		b.stop()
	}
	if l.provNS.IsOpen() {
		l.provNS.Close()
	}
	if l.inetNS.IsOpen() {
		l.inetNS.Close()
	}
	return removeRecorded(l.stateDir)
}

// removeRecorded removes what a state directory lists (Docker containers, then namespaces
// and files), then the directory.
func removeRecorded(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "resources"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, pass := range []string{"docker", "netns", "dir"} {
		for _, line := range lines {
			kind, name, ok := strings.Cut(line, " ")
			if !ok || kind != pass {
				continue
			}
			switch kind {
			case "docker":
				if out, err := run(nil, "docker", "rm", "-f", name); err != nil && !strings.Contains(out, "No such container") {
					errs = append(errs, err)
				}
			case "netns":
				if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
					if _, err := run(nil, "ip", "netns", "del", name); err != nil {
						errs = append(errs, err)
					}
				}
			case "dir":
				if strings.HasPrefix(name, "/etc/netns/cbt") {
					if err := os.RemoveAll(name); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweep removes what earlier runs left behind when they were killed before cleaning up:
// state directories whose process is gone. Live runs are left alone.
func sweep(log io.Writer) {
	ents, err := os.ReadDir(stateRoot)
	if err != nil {
		return
	}
	for _, e := range ents {
		dir := filepath.Join(stateRoot, e.Name())
		b, _ := os.ReadFile(filepath.Join(dir, "pid"))
		id := strings.TrimSpace(string(b))
		pid, _, _ := strings.Cut(id, " ")
		if n, _ := strconv.Atoi(pid); n > 0 && procIdentity(n) == id {
			continue // that run is still going
		}
		fmt.Fprintf(log, "tunnel-bench: removing leftovers of an earlier run (%s)\n", e.Name())
		if err := removeRecorded(dir); err != nil {
			fmt.Fprintf(log, "tunnel-bench: leftovers of %s: %v\n", e.Name(), err)
		}
	}
}

// procIdentity is "PID STARTTIME" of a live process ("" when it is gone or a zombie), so
// that a recycled pid is not taken for the run that wrote it.
func procIdentity(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return ""
	}
	return fmt.Sprintf("%d %s", pid, f[19]) // field 22: start time
}

// box is a stand-in for a workspace container: a process in a network namespace of its own
// with only lo, either `ip netns exec NS sleep` or a Docker container with --network none.
type box struct {
	name   string
	pid    int
	cmd    *exec.Cmd // netns boxes
	docker bool
}

func (b *box) stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
		b.cmd = nil
	}
}

// newNetnsBox starts `ip netns exec NS sleep`. Because /etc/netns/NS exists, ip also gives
// it a mount namespace of its own with /etc/resolv.conf bound to /etc/netns/NS/resolv.conf,
// so the resolver the tunnel writes never touches the machine's.
func (l *lab) newNetnsBox(name string, life time.Duration) (*box, error) {
	if err := l.addNetns(name); err != nil {
		return nil, err
	}
	dir := filepath.Join("/etc/netns", name)
	if err := l.record("dir", dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", strconv.Itoa(int(life.Seconds())+60))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &box{name: name, pid: cmd.Process.Pid, cmd: cmd}
	l.boxes = append(l.boxes, b)
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		// ip execs sleep once both namespaces are in place.
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", b.pid))
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", b.pid))
		if strings.TrimSpace(string(comm)) == "sleep" && mnt != "" && mnt != self {
			return b, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("box %s (pid %d) never reached its namespaces", name, b.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newDockerBox starts image with --network none, sleeping.
func (l *lab) newDockerBox(name, image string, life time.Duration) (*box, error) {
	if err := l.record("docker", name); err != nil {
		return nil, err
	}
	if _, err := run(nil, "docker", "run", "-d", "--rm", "--name", name, "--network", "none",
		"--entrypoint", "sleep", image, strconv.Itoa(int(life.Seconds())+60)); err != nil {
		return nil, err
	}
	out, err := run(nil, "docker", "inspect", "--format", "{{.State.Pid}}", name)
	if err != nil {
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("container %s pid %q: %v", name, out, err)
	}
	b := &box{name: name, pid: pid, docker: true}
	l.boxes = append(l.boxes, b)
	return b, nil
}

// startHTTP runs the download server in the internet namespace: GET /bytes?n=N answers N
// bytes (random, from a 1 MiB buffer), GET /small a few bytes.
func (l *lab) startHTTP() error {
	ln, err := nsNet{l.inetNS}.listen("tcp", inetIP+":80")
	if err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	chunk := make([]byte, 1<<20)
	_, _ = rand.Read(chunk)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	l.onClose(func() { srv.Close(); <-done })
	return nil
}

// fixedMTU is the provider's TUN: wireguard-go's native TUN asks its MTU by name in the
// namespace of the calling thread (the machine's), so the lab gives it the one it set.
type fixedMTU struct {
	tun.Device
	mtu int
}

func (t fixedMTU) MTU() (int, error) { return t.mtu, nil }

type wgKey struct{ priv, pub []byte }

func newWGKey() (wgKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wgKey{}, err
	}
	return wgKey{k.Bytes(), k.PublicKey().Bytes()}, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// startWireGuard runs the provider's WireGuard peer (wireguard-go: TUN and UDP socket in the
// provider namespace) and returns the egress IP record a host bound to it would have.
func (l *lab) startWireGuard(ctx context.Context) (app.EgressIP, error) {
	prov, err := newWGKey()
	if err != nil {
		return app.EgressIP{}, err
	}
	client, err := newWGKey()
	if err != nil {
		return app.EgressIP{}, err
	}
	psk := make([]byte, 32)
	_, _ = rand.Read(psk)
	tdev, h, err := tunnel.CreateTUNInNetns(l.provNS, "wgp", tunnel.DefaultMTU)
	if err != nil {
		return app.EgressIP{}, err
	}
	link, err := h.LinkByName("wgp")
	if err != nil {
		tdev.Close()
		h.Close()
		return app.EgressIP{}, err
	}
	logf := func(f string, a ...any) { l.logf("provider wireguard: "+f, a...) }
	dev := device.NewDevice(fixedMTU{tdev, tunnel.DefaultMTU},
		&tunnel.NetnsBind{Bind: conn.NewDefaultBind(), Netns: l.provNS},
		&device.Logger{Verbosef: func(string, ...any) {}, Errorf: logf})
	l.onClose(func() { dev.Close(); h.Close() })
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\npreshared_key=%s\nallowed_ip=%s\n",
		hex.EncodeToString(prov.priv), wgPort, hex.EncodeToString(client.pub), hex.EncodeToString(psk), wgPeerAddr)
	if err := dev.IpcSet(uapi); err != nil {
		return app.EgressIP{}, err
	}
	addr, _ := netlink.ParseAddr(wgProvAddr)
	if err := h.AddrAdd(link, addr); err != nil {
		return app.EgressIP{}, err
	}
	if err := h.LinkSetUp(link); err != nil {
		return app.EgressIP{}, err
	}
	if err := dev.Up(); err != nil {
		return app.EgressIP{}, err
	}
	return app.EgressIP{
		ID: "bench-wireguard-" + l.id, Label: "bench wireguard", IPAddress: exitIP, TunnelType: app.TunnelWireGuard,
		WGEndpoint: net.JoinHostPort(providerIP, strconv.Itoa(wgPort)), WGPublicKey: b64(prov.pub), WGPrivateKey: b64(client.priv),
		WGPresharedKey: b64(psk), WGAllowedIPs: "0.0.0.0/0, ::/0", WGDNSServer: inetIP, WGPeerAddress: wgPeerAddr,
	}, nil
}

// proxyKind returns the start function of a proxy row: a tunnel/outbound server for cfg
// (a sing-box outbound without server and server_port) on the provider's address, relaying
// from the provider namespace, and the egress IP record pointing at it.
func proxyKind(cfg map[string]any, withTLS bool) func(*lab, context.Context) (app.EgressIP, error) {
	return func(l *lab, ctx context.Context) (app.EgressIP, error) {
		pn := nsNet{l.provNS}
		ln, err := pn.listen("tcp", providerIP+":0")
		if err != nil {
			return app.EgressIP{}, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		var sc outbound.ServerConfig
		if cfg["type"] == "shadowsocks" {
			if sc.UDP, err = pn.listenPacket(ctx, "udp", ln.Addr().String()); err != nil {
				ln.Close()
				return app.EgressIP{}, err
			}
		}
		c := map[string]any{}
		for k, v := range cfg {
			c[k] = v
		}
		c["server"], c["server_port"] = providerIP, port
		if withTLS {
			tc, caPEM, err := outbound.SelfSigned(providerIP)
			if err != nil {
				ln.Close()
				return app.EgressIP{}, err
			}
			sc.TLS = tc
			c["tls"] = map[string]any{"enabled": true, "certificate": string(caPEM)}
		}
		raw, err := json.Marshal(c)
		if err != nil {
			ln.Close()
			return app.EgressIP{}, err
		}
		sc.Dial = pn.dial
		sc.ListenPacket = pn.listenPacket
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- outbound.Serve(sctx, ln, raw, sc) }()
		l.onClose(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					l.logf("%s server: %v", cfg["type"], err)
				}
			case <-time.After(5 * time.Second):
				l.logf("%s server did not stop", cfg["type"])
			}
		})
		name := fmt.Sprint(cfg["type"])
		return app.EgressIP{ID: "bench-" + name + "-" + l.id, Label: "bench " + name, IPAddress: exitIP,
			TunnelType: app.TunnelProxy, ProxyConfig: raw}, nil
	}
}
