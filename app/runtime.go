package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Runtime is what app needs from a container engine. The Docker implementation lives in
// package runtime; serve wires it. Every method is idempotent: creating a host that already
// has a container, starting a running one, stopping a stopped one or removing a missing one
// succeeds without change.
type Runtime interface {
	// Ping reports whether the engine answers.
	Ping(ctx context.Context) error
	// Create makes (but does not start) the container and, if missing, the home volume of a
	// host. An existing container for the host is left as it is.
	Create(ctx context.Context, spec HostSpec) (RuntimeHost, error)
	// Start starts the host's container.
	Start(ctx context.Context, hostID string) error
	// Stop stops the host's container gracefully, killing it after timeout.
	Stop(ctx context.Context, hostID string, timeout time.Duration) error
	// Remove deletes the host's container and, unless keepHome, its home volume.
	Remove(ctx context.Context, hostID string, keepHome bool) error
	// Inspect returns the state of the host's container; State is StateMissing when none exists.
	Inspect(ctx context.Context, hostID string) (RuntimeHost, error)
	// List returns every container carrying this product's labels.
	List(ctx context.Context) ([]RuntimeHost, error)
	// Events streams container state changes of this product's containers until ctx ends.
	Events(ctx context.Context) (<-chan RuntimeEvent, <-chan error)
	// WaitExecReady waits until a started host's container accepts commands.
	WaitExecReady(ctx context.Context, hostID string) error
	// Attach starts an interactive process in the host's running container, as the
	// workspace user (never root). The process is not tied to ctx once started.
	Attach(ctx context.Context, hostID string, opts AttachOptions) (Process, error)
	// DialNetns dials addr from inside the network namespace of process pid (a container's
	// init), so a container's own loopback can be reached.
	DialNetns(ctx context.Context, pid int, network, addr string) (net.Conn, error)
}

// WorkspaceHome is the home of the workspace user (uid 1000) in every managed image.
const WorkspaceHome = "/home/workspace"

// AttachOptions describe an interactive process started in a host's container by Attach.
type AttachOptions struct {
	// Cmd is the command and its arguments (required), e.g. ["bash", "-l"].
	Cmd []string
	// TTY allocates a pseudo-terminal: the process's stdout and stderr are then one stream
	// and Width/Height set its initial size.
	TTY bool
	// Env is added to the container's environment ("KEY=value").
	Env []string
	// Width and Height are the initial terminal size in columns and rows (TTY only).
	Width, Height uint
	// WorkingDir is the process's working directory (empty: the container's).
	WorkingDir string
}

// Process is a process started by Runtime.Attach. Read its stdout and stderr concurrently
// until both end, then Wait for the exit code, and Close in every case.
type Process interface {
	// Streams are the process's stdin (Close sends EOF), stdout (with a TTY, the terminal)
	// and stderr (always empty with a TTY).
	Streams() (stdin io.WriteCloser, stdout, stderr io.Reader)
	// Resize sets the terminal size of a TTY process.
	Resize(w, h uint) error
	// Signal delivers a signal (a name without SIG) to the process's group.
	Signal(ctx context.Context, sig string) error
	// Wait returns the exit code once the process has exited.
	Wait(ctx context.Context) (int, error)
	// Running reports whether the process still runs.
	Running(ctx context.Context) (bool, error)
	// Close drops the streams; it does not stop the process.
	Close() error
}

// HostSpec describes the container of one host.
type HostSpec struct {
	HostID   string
	UserID   string
	ShortID  string
	Hostname string
	Image    string
	CPU      float64 // cores, e.g. 1.5
	MemoryMB int64
	PIDs     int64
	// Network is "none" (default: loopback only, egress is attached by the tunnel room)
	// or "bridge" when the operator opts in with UNBOUND_HOST_NETWORK=bridge.
	Network string
}

// Container states reported by a Runtime.
const (
	StateMissing = "missing"
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	StatePaused  = "paused"
	StateOther   = "other"
)

// RuntimeHost is what the engine knows of a host's container.
type RuntimeHost struct {
	HostID      string
	UserID      string
	ContainerID string
	Image       string
	State       string // one of the State* constants
	Pid         int    // init pid when running (for network namespaces), else 0
	StartedAt   time.Time
	// Network is the network the container was created with ("none", "bridge"); "" when
	// the engine does not say.
	Network string
}

// RuntimeEvent is a state change of a labelled container.
type RuntimeEvent struct {
	HostID      string
	ContainerID string
	Action      string // start, die, stop, destroy, oom, ...
	At          time.Time
}

// RuntimeError is an engine failure translated to a stable task error code.
type RuntimeError struct {
	Code    ErrorCode // CodeRuntimeUnavailable, CodeImageMissing, CodeOutOfMemory, CodeRuntimeError, ...
	Message string
	Err     error
}

func (e *RuntimeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *RuntimeError) Unwrap() error { return e.Err }

// ErrRuntimeUnavailable marks an engine that cannot be reached.
var ErrRuntimeUnavailable = errors.New("container engine unavailable")
