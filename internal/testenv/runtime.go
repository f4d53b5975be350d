package testenv

import (
	"context"
	"fmt"
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

	mu      sync.Mutex
	hosts   map[string]*app.RuntimeHost
	lastPid int
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
		return &app.RuntimeError{Code: "container_missing", Message: "no container"}
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
