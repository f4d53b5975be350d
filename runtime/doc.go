// Package runtime is the Docker engine room of cloud-cli-proxy: it turns the app.Runtime
// interface (create, start, stop, remove, inspect, list, events) into calls on the official
// Docker Go client, and nothing else in the product talks to the engine.
//
// Every container and volume it makes carries the labels cloud-cli-proxy.managed=true,
// cloud-cli-proxy.host-id, cloud-cli-proxy.user-id and cloud-cli-proxy.short-id; containers
// are always found by label, never by name. Each host gets one container (ccp-<shortid>)
// and one home volume (ccp-home-<hostid>) mounted at /home/workspace.
//
// Containers run hardened: all capabilities dropped (Config.CapAdd adds back only what the
// operator lists), no-new-privileges, never privileged, never the Docker socket, a
// non-root user (1000:1000 by default), CPU/memory/PID limits, restart policy
// unless-stopped, and network mode "none" unless the spec asks for "bridge".
//
// Engine failures are returned as *app.RuntimeError with a stable code (see translate);
// an unreachable engine always satisfies errors.Is(err, app.ErrRuntimeUnavailable).
//
// The package never shells out to the docker CLI.
package runtime
