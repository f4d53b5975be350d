package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Runtime is an in-memory container engine (an app.Runtime): its containers are map entries
// and nothing runs. Starting a container that is not running gives it the next pid after
// PidBase, or Pid when that is set; stopping it clears its pid. Its event stream stays quiet
// until its context ends. The zero value is ready to use; a Runtime outlives the services
// built on it, as Docker outlives a server restart.
type Runtime struct {
	// PidBase is the pid before the first one handed out (1000 when 0): each start takes
	// the next.
	PidBase int
	// Pid, when set, is the pid of every started container: one real process (a lab
	// namespace "container") standing in for all of them.
	Pid int
	// Network, when set, is the only network Create accepts.
	Network string

	// Dial, when set, is DialNetns.
	Dial func(ctx context.Context, pid int, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	hosts   map[string]*app.RuntimeHost
	lastPid int
	procs   []*Process
}

func (r *Runtime) Ping(context.Context) error { return nil }

func (r *Runtime) Create(_ context.Context, s app.HostSpec) (app.RuntimeHost, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Network != "" && s.Network != r.Network {
		return app.RuntimeHost{}, fmt.Errorf("test containers have network %s, not %q", r.Network, s.Network)
	}
	if h, ok := r.hosts[s.HostID]; ok {
		return *h, nil
	}
	if r.hosts == nil {
		r.hosts = map[string]*app.RuntimeHost{}
	}
	h := &app.RuntimeHost{HostID: s.HostID, UserID: s.UserID, ContainerID: "c-" + s.HostID, Image: s.Image, State: app.StateCreated, Network: s.Network}
	r.hosts[s.HostID] = h
	return *h, nil
}

func (r *Runtime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hosts[id]
	if !ok {
		return &app.RuntimeError{Code: app.CodeContainerMissing, Message: "no container"}
	}
	if h.State != app.StateRunning {
		pid := r.Pid
		if pid == 0 {
			if r.lastPid == 0 {
				r.lastPid = r.PidBase
				if r.lastPid == 0 {
					r.lastPid = 1000
				}
			}
			r.lastPid++
			pid = r.lastPid
		}
		h.State, h.Pid, h.StartedAt = app.StateRunning, pid, time.Now()
	}
	return nil
}

func (r *Runtime) Stop(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.hosts[id]; ok {
		h.State, h.Pid = app.StateExited, 0
	}
	return nil
}

func (r *Runtime) Remove(_ context.Context, id string, _ bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.hosts, id)
	return nil
}

func (r *Runtime) Inspect(_ context.Context, id string) (app.RuntimeHost, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.hosts[id]; ok {
		return *h, nil
	}
	return app.RuntimeHost{HostID: id, State: app.StateMissing}, nil
}

func (r *Runtime) List(context.Context) ([]app.RuntimeHost, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []app.RuntimeHost
	for _, h := range r.hosts {
		out = append(out, *h)
	}
	return out, nil
}

func (r *Runtime) Events(ctx context.Context) (<-chan app.RuntimeEvent, <-chan error) {
	evs, errs := make(chan app.RuntimeEvent), make(chan error)
	go func() { <-ctx.Done(); close(evs); close(errs) }()
	return evs, errs
}

// WaitExecReady reports whether the container runs.
func (r *Runtime) WaitExecReady(ctx context.Context, id string) error {
	h, _ := r.Inspect(ctx, id)
	if h.State != app.StateRunning {
		return &app.RuntimeError{Code: app.CodeContainerNotRunning, Message: "container of host " + id + " is not running"}
	}
	return nil
}

// Attach starts a stand-in process in a running container: it echoes its stdin to its
// stdout until stdin is closed (exit status 0) or it gets a signal (exit status 128+n; HUP,
// INT, TERM and KILL end it).
func (r *Runtime) Attach(ctx context.Context, id string, opts app.AttachOptions) (app.Process, error) {
	if err := r.WaitExecReady(ctx, id); err != nil {
		return nil, err
	}
	if len(opts.Cmd) == 0 {
		return nil, &app.RuntimeError{Code: app.CodeRuntimeError, Message: "empty command"}
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &Process{Opts: opts, in: inW, out: outR, exited: make(chan struct{}), code: -1}
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	go func() {
		_, _ = io.Copy(outW, inR)
		p.exit(0)
		_ = outW.Close()
	}()
	go func() {
		<-p.exited
		_ = outW.Close()
		_ = inR.Close()
	}()
	return p, nil
}

// Processes returns every process Attach started.
func (r *Runtime) Processes() []*Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Process(nil), r.procs...)
}

// DialNetns dials Dial when set; otherwise it fails like a closed port.
func (r *Runtime) DialNetns(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	if r.Dial != nil {
		return r.Dial(ctx, pid, network, addr)
	}
	return nil, fmt.Errorf("dial %s in netns of pid %d: connection refused", addr, pid)
}

// Process is a stand-in process of Runtime.Attach.
type Process struct {
	Opts app.AttachOptions

	in     *io.PipeWriter
	out    *io.PipeReader
	mu     sync.Mutex
	code   int
	sigs   []string
	exited chan struct{}
	once   sync.Once
}

func (p *Process) exit(code int) {
	p.once.Do(func() {
		p.mu.Lock()
		p.code = code
		p.mu.Unlock()
		close(p.exited)
	})
}

// Streams implements app.Process.
func (p *Process) Streams() (io.WriteCloser, io.Reader, io.Reader) {
	return p.in, p.out, strings.NewReader("")
}

// Resize implements app.Process.
func (p *Process) Resize(w, h uint) error { return nil }

var fakeSignals = map[string]int{"HUP": 1, "INT": 2, "KILL": 9, "TERM": 15}

// Signal implements app.Process: HUP, INT, TERM and KILL end the process.
func (p *Process) Signal(_ context.Context, sig string) error {
	p.mu.Lock()
	p.sigs = append(p.sigs, sig)
	p.mu.Unlock()
	if n, ok := fakeSignals[sig]; ok {
		p.exit(128 + n)
	}
	return nil
}

// Signals lists the signals the process got.
func (p *Process) Signals() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sigs...)
}

// Wait implements app.Process.
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.code, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// Running implements app.Process.
func (p *Process) Running(context.Context) (bool, error) {
	select {
	case <-p.exited:
		return false, nil
	default:
		return true, nil
	}
}

// Close implements app.Process.
func (p *Process) Close() error {
	_ = p.out.Close()
	return nil
}
