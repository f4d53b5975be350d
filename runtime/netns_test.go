package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDialInNetnsArguments(t *testing.T) {
	ctx := context.Background()
	if _, err := DialInNetns(ctx, 0, "tcp", "127.0.0.1:1"); err == nil {
		t.Error("pid 0 accepted")
	}
	if _, err := DialInNetns(ctx, os.Getpid(), "udp", "127.0.0.1:1"); err == nil {
		t.Error("udp accepted")
	}
	if _, err := DialInNetns(ctx, os.Getpid(), "tcp", "localhost:1"); err == nil {
		t.Error("a host name accepted")
	}
}

func TestDialInNetnsReachesContainerLoopback(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("DialInNetns needs root (setns)")
		}
		t.Skip("DialInNetns needs root (setns)")
	}
	ctx := testCtx(t)
	spec := newSpec(t, d)
	h := mustStartReady(t, ctx, d, spec)
	if h.Pid <= 0 {
		t.Fatalf("running container without pid: %+v", h)
	}
	// A server inside the container, on its loopback only.
	_, stderr, code, err := d.Exec(ctx, spec.HostID, []string{"sh", "-c",
		"cd /tmp && echo in-container > marker-file && { nohup python3 -m http.server 8000 --bind 127.0.0.1 </dev/null >/dev/null 2>&1 & }"}, "")
	if err != nil || code != 0 {
		t.Fatalf("start server: %v %d %s", err, code, stderr)
	}
	// A server on the host's loopback, which must NOT be reachable from the container.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, hostPort, _ := net.SplitHostPort(hostLn.Addr().String())

	get := func() (string, error) {
		c, err := DialInNetns(ctx, h.Pid, "tcp", "127.0.0.1:8000")
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
		b, err := io.ReadAll(bufio.NewReader(c))
		return string(b), err
	}
	deadline := time.Now().Add(15 * time.Second)
	var body string
	for {
		body, err = get()
		if err == nil && strings.Contains(body, "marker-file") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listing from the container's server: %v %q", err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Interleave: namespace dials must never leak into the caller's threads.
	for i := 0; i < 20; i++ {
		if _, err := DialInNetns(ctx, h.Pid, "tcp", "127.0.0.1:"+hostPort); err == nil {
			t.Fatal("the host's loopback listener was reachable from inside the container")
		}
		c, err := net.DialTimeout("tcp", hostLn.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatalf("host dial after a namespace dial: %v", err)
		}
		c.Close()
		if _, err := get(); err != nil {
			t.Fatal(err)
		}
	}
}
