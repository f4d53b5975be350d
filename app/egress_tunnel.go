package app

import (
	"context"
	"encoding/json"
	"strings"
)

// Tunnel is the egress room: it tests egress IPs and gives a running host's container its
// one way out. tunnel.Manager implements it; NoTunnel is the room of a server without
// tunnels. The container has no other route, so a missing or dead tunnel means no
// traffic, never a leak.
type Tunnel interface {
	// Test runs the connectivity, exit-IP and DNS-leak checks of an egress IP from the server.
	Test(ctx context.Context, e EgressIP) (EgressTestResult, error)
	// Attach gives the container whose init process is pid the tunnel of e as its only
	// route out. Attaching a host again replaces its tunnel, or does nothing if nothing
	// changed.
	Attach(ctx context.Context, hostID string, pid int, e EgressIP) error
	// Detach removes a host's tunnel; detaching a host without one does nothing.
	Detach(ctx context.Context, hostID string) error
	// CheckHost runs the checks of Test from inside the network namespace of the container
	// whose init process is pid, by the container's own sockets, whatever the tunnel type.
	// The error is for a host that cannot be checked at all (errChecksUnconfigured when no
	// check service is set up); failed checks are in the result.
	CheckHost(ctx context.Context, hostID string, pid int, e EgressIP) (EgressTestResult, error)
	// Traffic returns the bytes received from and sent to the far end of the host's tunnel
	// since it was attached; ok is false when the host has none. It is a cheap look (no
	// packet is sent) that lets the reconciler check a host at once when its tunnel keeps
	// sending without hearing anything back; the check stays the only verdict.
	Traffic(hostID string) (rx, tx uint64, ok bool)
	// Validate checks what app's field checks cannot: that the room can run e (a proxy
	// setting its outbound does not speak, a key that does not decode). Its refusals are
	// *Error of kind invalid, so such an egress IP is refused with 422 when it is saved
	// rather than failing later, when a host starts.
	Validate(e EgressIP) error
}

// EgressTestResult is the outcome of the three egress checks.
type EgressTestResult struct {
	OK         bool          `json:"ok"`
	Checks     []EgressCheck `json:"checks"`
	DurationMS int64         `json:"duration_ms"`
}

// EgressCheck is one check's result.
type EgressCheck struct {
	Name string `json:"name"` // connectivity, exit_ip, dns_leak
	OK   bool   `json:"ok"`
	// Status is CheckPassed, CheckFailed or CheckSkipped (a check that did not run, e.g.
	// dns_leak without a check zone; it fails nothing). Empty (results recorded before
	// it existed, fakes) is told from OK and Reason when encoded.
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// EgressCheck.Status values.
const (
	CheckPassed  = "passed"
	CheckFailed  = "failed"
	CheckSkipped = "skipped"
)

// State is c.Status, or for a result without one, what OK and Reason say.
func (c EgressCheck) State() string {
	switch {
	case c.Status != "":
		return c.Status
	case c.OK:
		return CheckPassed
	case strings.HasPrefix(c.Reason, "skipped"):
		return CheckSkipped
	}
	return CheckFailed
}

// MarshalJSON writes Status as State.
func (c EgressCheck) MarshalJSON() ([]byte, error) {
	type plain EgressCheck
	c.Status = c.State()
	return json.Marshal(plain(c))
}
