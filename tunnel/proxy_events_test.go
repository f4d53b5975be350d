package tunnel

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A proxy TUN's link events (here: three changes of tun0 in the container) must not leave
// wireguard-go's netlink listener blocked on its event channel: it would outlive Detach,
// and its netlink socket would keep the container's namespace.
func TestProxyDetachAfterLinkEvents(t *testing.T) {
	l := newLab(t)
	m := l.proxyManager(t)
	tc := labProxyCases(t)[0]
	srv := l.startProxy(t, tc.cfg, tc.tls)
	c := newNetnsContainer(t)
	ctx := context.Background()
	listeners := func() int {
		buf := make([]byte, 1<<22)
		n := runtime.Stack(buf, true)
		return strings.Count(string(buf[:n]), "tun.(*NativeTun).routineNetlinkListener")
	}
	before := listeners()
	if err := m.Attach(ctx, "h", c.pid, proxyEgress("eg", srv.raw)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the TUN's own events at startup
	for i := 0; i < 3; i++ {
		if out, err := exec.Command("ip", "netns", "exec", c.name, "ip", "link", "set", ProxyInterfaceName, "txqueuelen", fmt.Sprint(600+i)).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := m.Detach(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the TUN's netlink listener ends with Detach", func() (bool, string) {
		n := listeners()
		return n <= before, fmt.Sprintf("%d listeners, %d before the attach", n, before)
	})
}
