// Package nsthread runs code inside another network namespace: the one place where an OS
// thread is locked and switched (setns) into a namespace and back. Sockets and devices
// created there stay in that namespace, so the runtime room dials a container's loopback
// and the tunnel room builds a container's tunnel device with it.
//
// A thread that cannot switch back is never unlocked: the Go runtime ends it with its
// goroutine rather than reuse a thread stuck in the other namespace.
package nsthread

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs fn on a dedicated OS thread switched into the network namespace target, then
// switches the thread back. If switching back fails, Run returns an error (fn's own is
// lost) and the caller must release whatever fn created.
func Run(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread() // setns failed: the thread is still where it was.
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("switching back to the server's netns failed (thread discarded): %w", err)
			return // still locked: the thread dies with this goroutine.
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Dial connects a socket created inside target (its name resolution, if any, happens
// there too).
func Dial(ctx context.Context, target netns.NsHandle, network, addr string) (net.Conn, error) {
	var (
		c   net.Conn
		err error
	)
	if nsErr := Run(target, func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return nil
	}); nsErr != nil {
		if c != nil {
			c.Close()
		}
		return nil, nsErr
	}
	return c, err
}

// Own returns a handle to the server's own network namespace: the calling thread's, as
// every thread outside Run is in it. (Not /proc/<pid>/ns/net: that is the main thread's,
// and the main thread may be running a Run function in another namespace at that moment.)
func Own() (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return netns.Get()
}

// IsOwn reports whether target is the server's own network namespace (see Own).
func IsOwn(target netns.NsHandle) (bool, error) {
	self, err := Own()
	if err != nil {
		return false, err
	}
	defer self.Close()
	return self.Equal(target), nil
}
