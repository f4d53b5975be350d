package app

import (
	"context"
	"net"
	"time"
)

// Tunnel is what app needs from the egress room.
type Tunnel interface {
	// Test runs the connectivity, exit-IP and DNS-leak checks of an egress IP from the server.
	Test(ctx context.Context, e EgressIP) (EgressTestResult, error)
}

// EgressTestResult is the outcome of the three egress checks.
type EgressTestResult struct {
	OK         bool          `json:"ok"`
	Checks     []EgressCheck `json:"checks"`
	DurationMS int64         `json:"duration_ms"`
}

// EgressCheck is one check's result.
type EgressCheck struct {
	Name       string `json:"name"` // connectivity, exit_ip, dns_leak
	OK         bool   `json:"ok"`
	Reason     string `json:"reason,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// NoRuntime is the runtime of a server built without a container engine: every action fails
// with runtime_unavailable. It never reports success it did not achieve.
type NoRuntime struct{}

func errNoRuntime() error {
	return &RuntimeError{Code: CodeRuntimeUnavailable, Message: "no container engine is configured", Err: ErrRuntimeUnavailable}
}

// Ping implements Runtime.
func (NoRuntime) Ping(context.Context) error { return errNoRuntime() }

// Create implements Runtime.
func (NoRuntime) Create(context.Context, HostSpec) (RuntimeHost, error) {
	return RuntimeHost{}, errNoRuntime()
}

// Start implements Runtime.
func (NoRuntime) Start(context.Context, string) error { return errNoRuntime() }

// Stop implements Runtime.
func (NoRuntime) Stop(context.Context, string, time.Duration) error { return errNoRuntime() }

// Remove implements Runtime.
func (NoRuntime) Remove(context.Context, string, bool) error { return errNoRuntime() }

// Inspect implements Runtime.
func (NoRuntime) Inspect(context.Context, string) (RuntimeHost, error) {
	return RuntimeHost{}, errNoRuntime()
}

// List implements Runtime.
func (NoRuntime) List(context.Context) ([]RuntimeHost, error) { return nil, errNoRuntime() }

// Events implements Runtime.
func (NoRuntime) Events(ctx context.Context) (<-chan RuntimeEvent, <-chan error) {
	ev := make(chan RuntimeEvent)
	errs := make(chan error, 1)
	errs <- errNoRuntime()
	close(ev)
	close(errs)
	return ev, errs
}

// NoTunnel is the egress room of a server built without tunnels: tests fail with a clear code.
type NoTunnel struct{}

// Test implements Tunnel.
func (NoTunnel) Test(context.Context, EgressIP) (EgressTestResult, error) {
	return EgressTestResult{}, unavailable("tunnel_unavailable", "egress tunnels are not available on this server yet")
}

// WaitExecReady implements Runtime.
func (NoRuntime) WaitExecReady(context.Context, string) error { return errNoRuntime() }

// Attach implements Runtime.
func (NoRuntime) Attach(context.Context, string, AttachOptions) (Process, error) {
	return nil, errNoRuntime()
}

// DialNetns implements Runtime.
func (NoRuntime) DialNetns(context.Context, int, string, string) (net.Conn, error) {
	return nil, errNoRuntime()
}
