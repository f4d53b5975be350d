package app

import (
	"context"
	"net"
	"time"
)

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

// NoTunnel is the egress room of a server built without tunnels (Deps.Tunnel nil): tests,
// attaches and host checks fail with a clear code, and such a service attaches and
// checks nothing (a bound host's container keeps no network but loopback).
type NoTunnel struct{}

func errNoTunnel() error {
	return unavailable(CodeTunnelUnavailable, "egress tunnels are not available on this server yet")
}

// Test implements Tunnel.
func (NoTunnel) Test(context.Context, EgressIP) (EgressTestResult, error) {
	return EgressTestResult{}, errNoTunnel()
}

// Attach implements Tunnel.
func (NoTunnel) Attach(context.Context, string, int, EgressIP) error { return errNoTunnel() }

// Detach implements Tunnel: there is nothing to remove.
func (NoTunnel) Detach(context.Context, string) error { return nil }

// CheckHost implements Tunnel.
func (NoTunnel) CheckHost(context.Context, string, int, EgressIP) (EgressTestResult, error) {
	return EgressTestResult{}, errNoTunnel()
}

// Traffic implements Tunnel: no host has a tunnel.
func (NoTunnel) Traffic(string) (rx, tx uint64, ok bool) { return 0, 0, false }

// Validate implements Tunnel: app's field checks are all there is.
func (NoTunnel) Validate(EgressIP) error { return nil }

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
