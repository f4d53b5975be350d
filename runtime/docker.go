package runtime

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Labels put on every container and volume this package makes.
const (
	LabelManaged = "cloud-cli-proxy.managed"
	LabelHostID  = "cloud-cli-proxy.host-id"
	LabelUserID  = "cloud-cli-proxy.user-id"
	LabelShortID = "cloud-cli-proxy.short-id"
)

// HomeDir is where the per-host home volume is mounted inside the container.
const HomeDir = app.WorkspaceHome

// Defaults used when a Config or HostSpec field is zero.
const (
	DefaultCPU          = 1.0         // cores
	DefaultMemoryMB     = 1024        // MiB
	DefaultPIDs         = 512         // processes
	DefaultUser         = "1000:1000" // uid:gid inside the container
	DefaultStopTimeout  = 10 * time.Second
	DefaultReadyTimeout = 30 * time.Second
)

// Config configures the Docker runtime. The zero value is usable.
type Config struct {
	// Host overrides the engine address (e.g. "unix:///var/run/docker.sock"). Empty: the
	// environment (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_API_VERSION)
	// and otherwise the platform default socket.
	Host string
	// DefaultCPU, DefaultMemoryMB and DefaultPIDs apply when the HostSpec leaves CPU,
	// MemoryMB or PIDs at zero. Zero here means DefaultCPU (1 core), DefaultMemoryMB
	// (1024 MiB) and DefaultPIDs (512).
	DefaultCPU      float64
	DefaultMemoryMB int64
	DefaultPIDs     int64
	// User is the uid:gid the container's processes run as. Empty: DefaultUser (1000:1000).
	User string
	// CapAdd lists the capabilities added back after dropping ALL (e.g. "NET_BIND_SERVICE").
	// Default: none.
	CapAdd []string
	// Init runs the engine's init (tini) as PID 1 to reap zombies. Default: off (the image's
	// entrypoint is PID 1).
	Init bool
	// StopTimeout is the grace period Stop uses when called with a timeout <= 0.
	// Zero: DefaultStopTimeout (10 s).
	StopTimeout time.Duration
	// ReadyTimeout bounds WaitExecReady (in addition to its ctx). Zero: DefaultReadyTimeout (30 s).
	ReadyTimeout time.Duration
	// RegistryAuthFile is the Docker config.json whose credentials PullImage uses; empty:
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json when present.
	RegistryAuthFile string
}

func (c Config) withDefaults() Config {
	if c.DefaultCPU <= 0 {
		c.DefaultCPU = DefaultCPU
	}
	if c.DefaultMemoryMB <= 0 {
		c.DefaultMemoryMB = DefaultMemoryMB
	}
	if c.DefaultPIDs <= 0 {
		c.DefaultPIDs = DefaultPIDs
	}
	if c.User == "" {
		c.User = DefaultUser
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	c.CapAdd = append([]string(nil), c.CapAdd...)
	return c
}

// Docker implements app.Runtime on a Docker engine. It is safe for concurrent use.
type Docker struct {
	cli *client.Client
	cfg Config
}

var _ app.Runtime = (*Docker)(nil)

// NewDocker builds a Docker runtime. It does not contact the engine (an unreachable engine
// shows up as app.CodeRuntimeUnavailable on the first call; call Ping to check at start-up);
// it fails only when the client cannot be configured (bad Host, bad TLS environment).
// The API version is negotiated with the engine on first use.
func NewDocker(ctx context.Context, cfg Config) (*Docker, error) {
	_ = ctx // reserved: construction does no I/O
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, rtErr(app.CodeRuntimeError, "configure docker client: "+clean(err), err)
	}
	return &Docker{cli: cli, cfg: cfg.withDefaults()}, nil
}

// Close releases the client's idle connections.
func (d *Docker) Close() error { return d.cli.Close() }

// ContainerName is the name given to a host's container.
func ContainerName(shortID string) string { return "ccp-" + shortID }

// VolumeName is the name of a host's home volume.
func VolumeName(hostID string) string { return "ccp-home-" + hostID }

// Ping reports whether the engine answers.
func (d *Docker) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return translate("ping engine", err)
	}
	return nil
}

// Create makes (but does not start) the host's container and, if missing, its home
// volume. If a labelled container already exists for the host it is returned unchanged.
func (d *Docker) Create(ctx context.Context, spec app.HostSpec) (app.RuntimeHost, error) {
	if spec.HostID == "" || spec.ShortID == "" || spec.Image == "" {
		return app.RuntimeHost{}, rtErr(app.CodeRuntimeError,
			"create container: host spec needs HostID, ShortID and Image", nil)
	}
	op := "create container for host " + spec.HostID
	if h, found, err := d.inspectHost(ctx, spec.HostID); err != nil {
		return app.RuntimeHost{}, translate(op, err)
	} else if found {
		return h, nil
	}

	// Check the image first so a missing one leaves nothing behind (no volume).
	if _, err := d.cli.ImageInspect(ctx, spec.Image); err != nil {
		if isNotFound(err) {
			return app.RuntimeHost{}, imageMissing(spec.Image, err)
		}
		return app.RuntimeHost{}, translate(op+": inspect image "+spec.Image, err)
	}

	labels := map[string]string{
		LabelManaged: "true",
		LabelHostID:  spec.HostID,
		LabelUserID:  spec.UserID,
		LabelShortID: spec.ShortID,
	}
	vol := VolumeName(spec.HostID)
	if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: vol, Labels: labels}); err != nil {
		return app.RuntimeHost{}, translate("create home volume "+vol, err)
	}

	cpu := spec.CPU
	if cpu <= 0 {
		cpu = d.cfg.DefaultCPU
	}
	memMB := spec.MemoryMB
	if memMB <= 0 {
		memMB = d.cfg.DefaultMemoryMB
	}
	pids := spec.PIDs
	if pids <= 0 {
		pids = d.cfg.DefaultPIDs
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = ContainerName(spec.ShortID)
	}
	netMode := "none"
	if spec.Network == "bridge" {
		netMode = "bridge"
	}
	mem := memMB * 1024 * 1024

	cfg := &container.Config{
		Image:      spec.Image,
		Hostname:   hostname,
		User:       d.cfg.User,
		WorkingDir: HomeDir,
		Env:        []string{"HOME=" + HomeDir},
		Labels:     labels,
	}
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(netMode),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		CapDrop:       []string{"ALL"},
		CapAdd:        d.cfg.CapAdd,
		SecurityOpt:   []string{"no-new-privileges"},
		Privileged:    false,
		Mounts: []mount.Mount{{
			Type:   mount.TypeVolume,
			Source: vol,
			Target: HomeDir,
		}},
		Resources: container.Resources{
			NanoCPUs:   int64(math.Round(cpu * 1e9)),
			Memory:     mem,
			MemorySwap: mem, // no swap beyond the memory limit
			PidsLimit:  &pids,
		},
	}
	if d.cfg.Init {
		init := true
		hc.Init = &init
	}

	name := ContainerName(spec.ShortID)
	if _, err := d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, name); err != nil {
		switch {
		case isNotFound(err):
			return app.RuntimeHost{}, imageMissing(spec.Image, err)
		case isConflict(err):
			// Lost a race with a concurrent Create for the same host: return the winner once
			// the engine lists it (it reserves the name before the container is listed).
			var h app.RuntimeHost
			rerr := retry(ctx, 5*time.Second, func() (bool, error) {
				var found bool
				var ierr error
				h, found, ierr = d.inspectHost(ctx, spec.HostID)
				if ierr != nil {
					return true, ierr
				}
				if found {
					return true, nil
				}
				return false, err
			})
			if rerr == nil {
				return h, nil
			}
			return app.RuntimeHost{}, translate(op+" (name "+name+" in use)", rerr)
		default:
			return app.RuntimeHost{}, translate(op, err)
		}
	}
	h, found, err := d.inspectHost(ctx, spec.HostID)
	if err != nil {
		return app.RuntimeHost{}, translate(op, err)
	}
	if !found {
		return app.RuntimeHost{}, rtErr(app.CodeRuntimeError, op+": container vanished right after creation", nil)
	}
	return h, nil
}

// Start starts the host's container; starting a running one succeeds without change.
func (d *Docker) Start(ctx context.Context, hostID string) error {
	op := "start container for host " + hostID
	id, err := d.requireContainer(ctx, op, hostID)
	if err != nil {
		return err
	}
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		if isNotFound(err) {
			return missing(op, hostID, err)
		}
		return translate(op, err)
	}
	return nil
}

// Stop stops the host's container: SIGTERM (or the image's stop signal), then SIGKILL after
// timeout (timeout <= 0: Config.StopTimeout). Stopping a stopped one succeeds.
func (d *Docker) Stop(ctx context.Context, hostID string, timeout time.Duration) error {
	op := "stop container for host " + hostID
	id, err := d.requireContainer(ctx, op, hostID)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = d.cfg.StopTimeout
	}
	secs := int(math.Ceil(timeout.Seconds()))
	if err := d.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		if isNotFound(err) {
			return missing(op, hostID, err)
		}
		return translate(op, err)
	}
	return nil
}

// Remove deletes the host's container(s) (forcefully, running or not) and, unless keepHome,
// its home volume. Removing a missing host succeeds.
func (d *Docker) Remove(ctx context.Context, hostID string, keepHome bool) error {
	op := "remove container for host " + hostID
	cs, err := d.listHost(ctx, hostID)
	if err != nil {
		return translate(op, err)
	}
	for _, c := range cs {
		err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		if err != nil && !isNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
			return translate(op, err)
		}
	}
	if keepHome {
		return nil
	}
	return d.removeVolumes(ctx, hostID)
}

// removeVolumes removes the host's home volume (by name and by label), retrying with
// backoff while the engine still counts it as in use by a container being removed.
func (d *Docker) removeVolumes(ctx context.Context, hostID string) error {
	op := "remove home volume of host " + hostID
	names := map[string]bool{VolumeName(hostID): true}
	vl, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelHostID+"="+hostID),
	)})
	if err != nil {
		return translate(op, err)
	}
	for _, v := range vl.Volumes {
		names[v.Name] = true
	}
	for name := range names {
		err := retry(ctx, 10*time.Second, func() (bool, error) {
			err := d.cli.VolumeRemove(ctx, name, false)
			switch {
			case err == nil || isNotFound(err):
				return true, nil
			case isConflict(err): // in use: a container removal still finishing
				return false, err
			default:
				return true, err
			}
		})
		if err != nil {
			return translate(op, err)
		}
	}
	return nil
}

// Inspect returns the state of the host's container; State is app.StateMissing when none exists.
func (d *Docker) Inspect(ctx context.Context, hostID string) (app.RuntimeHost, error) {
	h, found, err := d.inspectHost(ctx, hostID)
	if err != nil {
		return app.RuntimeHost{}, translate("inspect container for host "+hostID, err)
	}
	if !found {
		return app.RuntimeHost{HostID: hostID, State: app.StateMissing}, nil
	}
	return h, nil
}

// List returns every container carrying this product's labels (any state).
func (d *Docker) List(ctx context.Context) ([]app.RuntimeHost, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
	)})
	if err != nil {
		return nil, translate("list containers", err)
	}
	out := make([]app.RuntimeHost, 0, len(cs))
	for _, c := range cs {
		info, err := d.cli.ContainerInspect(ctx, c.ID)
		if err != nil {
			if isNotFound(err) { // removed meanwhile
				continue
			}
			return nil, translate("list containers: inspect "+c.ID, err)
		}
		out = append(out, toHost(info))
	}
	return out, nil
}

// listHost lists the labelled containers of one host, the preferred one first (running,
// then most recently created).
func (d *Docker) listHost(ctx context.Context, hostID string) ([]container.Summary, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelHostID+"="+hostID),
	)})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(cs, func(i, j int) bool {
		ri, rj := cs[i].State == "running", cs[j].State == "running"
		if ri != rj {
			return ri
		}
		return cs[i].Created > cs[j].Created
	})
	return cs, nil
}

// inspectHost finds and inspects the host's container. found is false when there is none.
func (d *Docker) inspectHost(ctx context.Context, hostID string) (h app.RuntimeHost, found bool, err error) {
	cs, err := d.listHost(ctx, hostID)
	if err != nil {
		return app.RuntimeHost{}, false, err
	}
	for _, c := range cs {
		info, err := d.cli.ContainerInspect(ctx, c.ID)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return app.RuntimeHost{}, false, err
		}
		return toHost(info), true, nil
	}
	return app.RuntimeHost{}, false, nil
}

// requireContainer returns the ID of the host's container or a container_missing error.
func (d *Docker) requireContainer(ctx context.Context, op, hostID string) (string, error) {
	cs, err := d.listHost(ctx, hostID)
	if err != nil {
		return "", translate(op, err)
	}
	if len(cs) == 0 {
		return "", missing(op, hostID, nil)
	}
	return cs[0].ID, nil
}

func imageMissing(image string, cause error) error {
	return rtErr(app.CodeImageMissing,
		fmt.Sprintf("image %q is not present on the container engine (pull, build or load it, or set IMAGE_PULL_POLICY=missing)", image), cause)
}

func missing(op, hostID string, cause error) error {
	return rtErr(CodeContainerMissing, op+": no container exists for host "+hostID, cause)
}

func toHost(info container.InspectResponse) app.RuntimeHost {
	h := app.RuntimeHost{ContainerID: info.ID, State: app.StateOther}
	if info.Config != nil {
		h.HostID = info.Config.Labels[LabelHostID]
		h.UserID = info.Config.Labels[LabelUserID]
		h.Image = info.Config.Image
	}
	if h.Image == "" {
		h.Image = info.Image
	}
	if info.HostConfig != nil {
		switch m := string(info.HostConfig.NetworkMode); m {
		case "default":
			h.Network = "bridge"
		default:
			h.Network = m
		}
	}
	if st := info.State; st != nil {
		h.State = mapState(st.Status)
		if st.Running {
			h.Pid = st.Pid
		}
		if t, err := time.Parse(time.RFC3339Nano, st.StartedAt); err == nil && t.Year() > 1 {
			h.StartedAt = t
		}
	}
	return h
}

// mapState maps an engine container status to an app.State* constant.
func mapState(status string) string {
	switch status {
	case "created":
		return app.StateCreated
	case "running":
		return app.StateRunning
	case "exited":
		return app.StateExited
	case "paused":
		return app.StatePaused
	default: // restarting, removing, dead, ...
		return app.StateOther
	}
}

// retry calls f with exponential backoff (25 ms doubling to 1 s) until it reports done,
// ctx ends or limit passes; it returns f's last error.
func retry(ctx context.Context, limit time.Duration, f func() (done bool, err error)) error {
	deadline := time.Now().Add(limit)
	delay := 25 * time.Millisecond
	for {
		done, err := f()
		if done || time.Now().Add(delay).After(deadline) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = ctx.Err()
			}
			return err
		case <-t.C:
		}
		if delay *= 2; delay > time.Second {
			delay = time.Second
		}
	}
}
