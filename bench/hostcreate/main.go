// Command hostcreate measures how long a host takes to become usable when created through the
// service (app.Service on a real bbolt file with the real runtime.Docker) against the same
// container created, started and probed directly with the Docker Go client.
//
//	go run ./bench/hostcreate [-n 20] [-rounds 3]
//
// "Ours" is the time from svc.CreateHost until its host.create task has succeeded, that is
// until the container runs and `true` can be exec'd in it. "Direct" is VolumeCreate +
// ContainerCreate (same Config and HostConfig as runtime.Docker.Create: limits, CapDrop ALL,
// no-new-privileges, network none, home volume, user 1000:1000) + ContainerStart + exec of
// `true` until it exits 0, with the readiness back-off runtime.Docker.WaitExecReady uses.
// Both run for one host (several rounds) and for n hosts at once.
//
// Everything the run creates carries labels unique to it (direct containers and volumes:
// ccp-bench.hostcreate=<run id>; ours: cloud-cli-proxy.user-id=<the run's own user>) and is
// removed after each case and again on exit, including on error and on SIGINT/SIGTERM. The
// whole run is bounded by -timeout.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// Target is the largest acceptable ours/direct ratio.
const Target = 1.3

// directLabel marks the containers and volumes of the direct baseline; its value is the run id.
const directLabel = "ccp-bench.hostcreate"

// Readiness polling of the direct baseline, as in runtime.Docker.WaitExecReady and its exec.
const (
	readyFirstDelay = 50 * time.Millisecond
	readyMaxDelay   = time.Second
	readyTimeout    = runtime.DefaultReadyTimeout
)

// Options configure a run.
type Options struct {
	N          int           // hosts created at once in the concurrent case
	Rounds     int           // rounds of each case
	Image      string        // image (never pulled)
	BatchDelay time.Duration // bbolt MaxBatchDelay of ours
	Timeout    time.Duration // bound on the whole run
	Log        io.Writer     // progress; nil: discarded
}

// DefaultImage is CCP_TEST_IMAGE or the offline test image built by deploy/testimage/build.sh.
func DefaultImage() string {
	if v := os.Getenv("CCP_TEST_IMAGE"); v != "" {
		return v
	}
	return "cloud-cli-proxy/managed-test:latest"
}

func main() {
	o := Options{Log: os.Stderr}
	flag.IntVar(&o.N, "n", 20, "hosts created at once in the concurrent case")
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds of each case")
	flag.StringVar(&o.Image, "image", DefaultImage(), "image the hosts run (must exist; never pulled)")
	flag.DurationVar(&o.BatchDelay, "batch-delay", 2*time.Millisecond, "bbolt MaxBatchDelay of ours (cmd/serve uses 2ms)")
	flag.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "bound on the whole run")
	flag.Parse()

	// The first SIGINT/SIGTERM cancels the run; later ones stay caught (ignored) so that the
	// cleanup, itself bounded, can finish.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "hostcreate: %s: stopping and removing what the run created\n", s)
		cancel()
	}()
	rep, err := Run(ctx, o)
	if rep != nil && len(rep.Rows()) > 0 {
		fmt.Println(rep.String())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostcreate:", err)
		os.Exit(1)
	}
}

// UnavailableError reports that the engine or the image is missing: the benchmark cannot run
// here at all.
type UnavailableError struct{ Msg string }

func (e *UnavailableError) Error() string { return e.Msg }

// Preflight connects to the engine and checks that image exists.
func Preflight(ctx context.Context, image string) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, &UnavailableError{"docker client: " + err.Error()}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, &UnavailableError{"docker engine unreachable: " + err.Error()}
	}
	if _, err := cli.ImageInspect(pctx, image); err != nil {
		cli.Close()
		return nil, &UnavailableError{fmt.Sprintf("image %s missing (build it with: bash deploy/testimage/build.sh): %v", image, err)}
	}
	return cli, nil
}

// Run performs the whole benchmark and returns its report. Whatever it created is removed
// before it returns.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.N < 1 || o.N > 200 {
		return nil, fmt.Errorf("-n must be between 1 and 200")
	}
	if o.Rounds < 1 || o.Rounds > 50 {
		return nil, fmt.Errorf("-rounds must be between 1 and 50")
	}
	if o.Image == "" {
		o.Image = DefaultImage()
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	cli, err := Preflight(ctx, o.Image)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	b := &bench{o: o, cli: cli, runID: randomHex(4)}
	b.logf("run %s: image %s, n=%d, rounds=%d", b.runID, o.Image, o.N, o.Rounds)

	// Cleanup runs whatever happened, with its own bound, after the service has stopped.
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer ccancel()
		if cerr := b.cleanup(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if err := b.startService(ctx); err != nil {
		return nil, err
	}
	defer b.stopService()

	if err := b.warmUp(ctx); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	rep = &Report{N: o.N, Rounds: o.Rounds, Image: o.Image, BatchDelay: o.BatchDelay, runID: b.runID, userID: b.userID}
	for r := 0; r < o.Rounds; r++ {
		// Alternate which side goes first so drift in the engine's state favours neither.
		for _, ours := range order(r) {
			if err := b.measure(ctx, rep, ours, 1, r); err != nil {
				return rep, err
			}
		}
	}
	for r := 0; r < o.Rounds; r++ {
		for _, ours := range order(r) {
			if err := b.measure(ctx, rep, ours, o.N, r); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

func order(round int) []bool {
	if round%2 == 0 {
		return []bool{true, false}
	}
	return []bool{false, true}
}

type bench struct {
	o     Options
	cli   *client.Client
	runID string
	seq   atomic.Int64

	dir     string
	db      *storage.DB
	store   *watchStore
	rt      *runtime.Docker
	svc     *app.Service
	stopSvc func()
	admin   app.Principal
	userID  string
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.o.Log, "hostcreate: "+format+"\n", args...)
}

// startService builds ours as cmd/serve does: bbolt in a temp dir, the real Docker runtime,
// app.Service with enough workers for every host of the concurrent case.
func (b *bench) startService(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "ccp-bench-hostcreate-")
	if err != nil {
		return err
	}
	b.dir = dir
	b.db, err = storage.Open(filepath.Join(dir, "bench.db"), storage.Options{MaxBatchDelay: b.o.BatchDelay})
	if err != nil {
		return err
	}
	b.store = newWatchStore(b.db)
	b.rt, err = runtime.NewDocker(ctx, runtime.Config{})
	if err != nil {
		return err
	}
	secret := []byte(randomHex(32))
	b.svc, err = app.New(app.Config{
		JWTSecret: secret, BcryptCost: 4, ManagedImage: b.o.Image,
		Workers:           max(b.o.N, 4),
		ReconcileInterval: -1, // no background reconciler reacting to other processes' containers
	}, app.Deps{Store: b.store, Runtime: b.rt, Logger: slog.New(slog.NewTextHandler(b.o.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	wait, err := b.svc.Start(sctx)
	if err != nil {
		cancel()
		return err
	}
	stop := context.AfterFunc(ctx, cancel) // an interrupt stops the workers too
	b.stopSvc = func() { stop(); cancel(); wait() }
	b.admin = app.Principal{Username: "bench", Role: app.RoleAdmin, Method: "system"}
	u, err := b.svc.CreateUser(ctx, b.admin, app.CreateUserInput{Username: "bench-" + b.runID, Password: randomHex(8), Role: app.RoleUser})
	if err != nil {
		return err
	}
	b.userID = u.ID
	b.logf("ours: database %s; containers and volumes labelled %s=%s", b.dir, runtime.LabelUserID, b.userID)
	b.logf("direct: containers and volumes labelled %s=%s", directLabel, b.runID)
	return nil
}

func (b *bench) stopService() {
	if b.stopSvc != nil {
		b.stopSvc()
		b.stopSvc = nil
	}
}

// cleanup stops ours and removes every container and volume the run created, then the database.
func (b *bench) cleanup(ctx context.Context) error {
	b.stopService()
	var errs []error
	// Two passes: a create cancelled client-side may still land on the engine a moment later.
	for pass := 0; pass < 2; pass++ {
		if pass > 0 {
			time.Sleep(time.Second)
		}
		if err := b.removeDirect(ctx); err != nil && pass == 1 {
			errs = append(errs, err)
		}
		if b.userID != "" {
			if err := b.removeOurs(ctx); err != nil && pass == 1 {
				errs = append(errs, err)
			}
		}
	}
	if b.rt != nil {
		b.rt.Close()
	}
	if b.db != nil {
		if err := b.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *bench) removeOurs(ctx context.Context) error {
	return removeLabelled(ctx, b.cli, runtime.LabelManaged+"=true", runtime.LabelUserID+"="+b.userID)
}

func (b *bench) removeDirect(ctx context.Context) error {
	return removeLabelled(ctx, b.cli, directLabel+"="+b.runID)
}

// removeLabelled force-removes the containers, then the volumes, carrying every label given.
func removeLabelled(ctx context.Context, cli *client.Client, labels ...string) error {
	args := filters.NewArgs()
	for _, l := range labels {
		args.Add("label", l)
	}
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return fmt.Errorf("list containers %v: %w", labels, err)
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			err := cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
			if err != nil && !cerrdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
				mu.Lock()
				errs = append(errs, fmt.Errorf("remove container %s: %w", id[:12], err))
				mu.Unlock()
			}
		}(c.ID)
	}
	wg.Wait()
	vl, err := cli.VolumeList(ctx, volume.ListOptions{Filters: args})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list volumes %v: %w", labels, err))...)
	}
	for _, v := range vl.Volumes {
		deadline := time.Now().Add(15 * time.Second)
		for {
			err := cli.VolumeRemove(ctx, v.Name, false)
			if err == nil || cerrdefs.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
				break
			}
			time.Sleep(100 * time.Millisecond) // in use by a container still being removed
		}
	}
	return errors.Join(errs...)
}

// settle removes the containers of the case just measured and lets the engine go idle, so
// the next case starts from the same state.
func (b *bench) settle(ctx context.Context) error {
	if err := b.removeOurs(ctx); err != nil {
		return err
	}
	if err := b.removeDirect(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
		return nil
	}
}

// warmUp creates one host each way (not measured), checks that both containers got the same
// configuration, and removes them.
func (b *bench) warmUp(ctx context.Context) error {
	b.logf("warm-up and configuration check")
	first, err := b.oursOne(ctx)
	if err != nil {
		return err
	}
	ds, err := b.directOne(ctx)
	if err != nil {
		return err
	}
	rh, err := b.rt.Inspect(ctx, first.hostID)
	if err != nil {
		return err
	}
	oi, err := b.cli.ContainerInspect(ctx, rh.ContainerID)
	if err != nil {
		return err
	}
	di, err := b.cli.ContainerInspect(ctx, ds.containerID)
	if err != nil {
		return err
	}
	if diff := configDiff(oi, di); diff != "" {
		return fmt.Errorf("the direct baseline's container differs from runtime.Docker's: %s", diff)
	}
	return b.settle(ctx)
}

// configDiff lists the settings (limits, hardening, user, network, mounts) in which two
// containers differ.
func configDiff(a, b container.InspectResponse) string {
	type view struct {
		User, WorkingDir, Image, Network, Restart string
		Env                                       []string
		CapDrop, CapAdd, SecurityOpt              []string
		Privileged, Init                          bool
		NanoCPUs, Memory, MemorySwap, PIDs        int64
		Mounts                                    []string
	}
	v := func(c container.InspectResponse) view {
		out := view{User: c.Config.User, WorkingDir: c.Config.WorkingDir, Image: c.Config.Image,
			Network: string(c.HostConfig.NetworkMode), Restart: string(c.HostConfig.RestartPolicy.Name),
			Env: c.Config.Env, CapDrop: c.HostConfig.CapDrop, CapAdd: c.HostConfig.CapAdd, SecurityOpt: c.HostConfig.SecurityOpt,
			Privileged: c.HostConfig.Privileged, Init: c.HostConfig.Init != nil && *c.HostConfig.Init,
			NanoCPUs: c.HostConfig.NanoCPUs, Memory: c.HostConfig.Memory, MemorySwap: c.HostConfig.MemorySwap}
		if c.HostConfig.PidsLimit != nil {
			out.PIDs = *c.HostConfig.PidsLimit
		}
		for _, m := range c.HostConfig.Mounts {
			out.Mounts = append(out.Mounts, string(m.Type)+":"+m.Target)
		}
		return out
	}
	va, vb := v(a), v(b)
	var diffs []string
	check := func(name string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			diffs = append(diffs, fmt.Sprintf("%s %v vs %v", name, x, y))
		}
	}
	check("user", va.User, vb.User)
	check("workdir", va.WorkingDir, vb.WorkingDir)
	check("image", va.Image, vb.Image)
	check("network", va.Network, vb.Network)
	check("restart", va.Restart, vb.Restart)
	check("env", va.Env, vb.Env)
	check("cap-drop", va.CapDrop, vb.CapDrop)
	check("cap-add", va.CapAdd, vb.CapAdd)
	check("security-opt", va.SecurityOpt, vb.SecurityOpt)
	check("privileged", va.Privileged, vb.Privileged)
	check("init", va.Init, vb.Init)
	check("nano-cpus", va.NanoCPUs, vb.NanoCPUs)
	check("memory", va.Memory, vb.Memory)
	check("memory-swap", va.MemorySwap, vb.MemorySwap)
	check("pids", va.PIDs, vb.PIDs)
	check("mounts", va.Mounts, vb.Mounts)
	return strings.Join(diffs, "; ")
}

// measure runs one case (n hosts at once, one side) and adds it to rep.
func (b *bench) measure(ctx context.Context, rep *Report, ours bool, n, round int) error {
	side := "direct"
	if ours {
		side = "ours"
	}
	b.logf("round %d/%d: %d host(s) at once, %s", round+1, b.o.Rounds, n, side)
	if ours {
		b.store.reset()
	}
	gate := make(chan struct{})
	var wg sync.WaitGroup
	lat := make([]time.Duration, n)
	ends := make([]time.Time, n)
	errs := make([]error, n)
	var ph phases
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-gate
			if ours {
				s, err := b.oursOne(ctx)
				errs[i], lat[i], ends[i] = err, s.total, s.end
				mu.Lock()
				ph.addOurs(s)
				mu.Unlock()
			} else {
				s, err := b.directOne(ctx)
				errs[i], lat[i], ends[i] = err, s.total, s.end
				mu.Lock()
				ph.addDirect(s)
				mu.Unlock()
			}
		}(i)
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s, %d at once: %w", side, n, err)
	}
	var wall time.Duration
	for _, e := range ends {
		wall = max(wall, e.Sub(start))
	}
	c := rep.side(n == 1, ours)
	c.walls = append(c.walls, wall)
	c.hosts = append(c.hosts, lat...)
	c.phases.merge(&ph)
	if ours {
		cnt, d := b.store.stats()
		c.commits += cnt
		c.commitTime += d
	}
	b.logf("  all ready after %s (per host p50 %s)", fmtDur(wall), fmtDur(percentile(lat, 50)))
	return b.settle(ctx)
}

// oursSample is one host created through the service.
type oursSample struct {
	hostID string
	call   time.Duration // CreateHost
	total  time.Duration // CreateHost until the task is seen succeeded
	start  time.Time
	ret    time.Time
	end    time.Time
	task   app.Task
}

func (b *bench) oursOne(ctx context.Context) (oursSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var s oursSample
	s.start = time.Now()
	hc, err := b.svc.CreateHost(ctx, b.admin, app.CreateHostInput{UserID: b.userID})
	if err != nil {
		return s, fmt.Errorf("CreateHost: %w", err)
	}
	s.ret = time.Now()
	s.call = s.ret.Sub(s.start)
	s.hostID = hc.Host.ID
	t, err := b.waitTask(ctx, hc.Task.ID)
	s.end = time.Now()
	s.total = s.end.Sub(s.start)
	s.task = t
	if err != nil {
		return s, fmt.Errorf("task %s: %w", hc.Task.ID, err)
	}
	if t.State != app.TaskSucceeded {
		msg := ""
		if t.Error != nil {
			msg = t.Error.Code.String() + ": " + t.Error.Message
		}
		return s, fmt.Errorf("task %s %s: %s", t.ID, t.State, msg)
	}
	return s, nil
}

// waitTask returns once the task has finished. It reads the task after every committed store
// update (and at least every 250ms), so it sees the final commit within microseconds without
// polling the database in a tight loop.
func (b *bench) waitTask(ctx context.Context, id string) (app.Task, error) {
	for {
		changed := b.store.changed()
		t, err := b.svc.GetTask(ctx, b.admin, id)
		if err != nil {
			return t, err
		}
		if t.State == app.TaskSucceeded || t.State == app.TaskFailed {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-changed:
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// directSample is one host made directly on the engine.
type directSample struct {
	containerID string
	total       time.Duration
	create      time.Duration // volume + container
	start       time.Duration
	ready       time.Duration // exec of `true` until it exits 0
	attempts    int
	end         time.Time
}

// directOne does by hand, with the same settings, what runtime.Docker's Create, Start and
// WaitExecReady do, without the service, the store or the runtime's extra look-ups.
func (b *bench) directOne(ctx context.Context) (directSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var s directSample
	seq := b.seq.Add(1)
	short := fmt.Sprintf("%s%02d", b.runID, seq%100)
	name := fmt.Sprintf("ccpbench-%s-%d", b.runID, seq)
	vol := name + "-home"
	labels := map[string]string{directLabel: b.runID}
	cpu, memMB, pids := app.DefaultCPU, int64(app.DefaultMemoryMB), int64(app.DefaultPIDs)
	mem := memMB * 1024 * 1024
	cfg := &container.Config{
		Image:      b.o.Image,
		Hostname:   "ws-" + short,
		User:       runtime.DefaultUser,
		WorkingDir: runtime.HomeDir,
		Env:        []string{"HOME=" + runtime.HomeDir},
		Labels:     labels,
	}
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode("none"),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		CapDrop:       []string{"ALL"},
		SecurityOpt:   []string{"no-new-privileges"},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: runtime.HomeDir}},
		Resources: container.Resources{
			NanoCPUs:   int64(math.Round(cpu * 1e9)),
			Memory:     mem,
			MemorySwap: mem,
			PidsLimit:  &pids,
		},
	}

	t0 := time.Now()
	if _, err := b.cli.VolumeCreate(ctx, volume.CreateOptions{Name: vol, Labels: labels}); err != nil {
		return s, fmt.Errorf("create volume: %w", err)
	}
	created, err := b.cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		return s, fmt.Errorf("create container: %w", err)
	}
	s.containerID = created.ID
	t1 := time.Now()
	if err := b.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return s, fmt.Errorf("start container: %w", err)
	}
	t2 := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, readyTimeout)
	defer rcancel()
	delay := readyFirstDelay
	for {
		s.attempts++
		code, err := b.execTrue(rctx, created.ID)
		if err == nil && code == 0 {
			break
		}
		if err == nil {
			err = fmt.Errorf("`true` exited %d", code)
		}
		select {
		case <-rctx.Done():
			return s, fmt.Errorf("not exec-ready in time: %w", err)
		case <-time.After(delay):
		}
		delay = min(2*delay, readyMaxDelay)
	}
	s.end = time.Now()
	s.create, s.start, s.ready, s.total = t1.Sub(t0), t2.Sub(t1), s.end.Sub(t2), s.end.Sub(t0)
	return s, nil
}

// execTrue runs `true` in the container: ExecCreate, exec start attached (ContainerExecAttach
// is POST /exec/{id}/start, as runtime.Docker.Exec uses), drain the output, then ExecInspect
// until the engine has recorded the exit code (25ms back-off, as the runtime).
func (b *bench) execTrue(ctx context.Context, id string) (int, error) {
	ex, err := b.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: []string{"true"}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, err
	}
	resp, err := b.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, err
	}
	_, err = stdcopy.StdCopy(io.Discard, io.Discard, resp.Reader)
	resp.Close()
	if err != nil {
		return -1, err
	}
	delay := 25 * time.Millisecond
	for deadline := time.Now().Add(10 * time.Second); ; {
		ins, err := b.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return -1, err
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return -1, errors.New("exec still running after its output ended")
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// watchStore is the bbolt store with a signal after every committed Update (so waiters need
// not poll) and a count of Updates and the time spent in them.
type watchStore struct {
	app.Store
	mu      sync.Mutex
	ch      chan struct{}
	commits int
	spent   time.Duration
}

func newWatchStore(s app.Store) *watchStore { return &watchStore{Store: s, ch: make(chan struct{})} }

func (w *watchStore) Update(ctx context.Context, fn func(app.Tx) error) error {
	t := time.Now()
	err := w.Store.Update(ctx, fn)
	d := time.Since(t)
	w.mu.Lock()
	w.commits++
	w.spent += d
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
	return err
}

func (w *watchStore) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *watchStore) reset() {
	w.mu.Lock()
	w.commits, w.spent = 0, 0
	w.mu.Unlock()
}

func (w *watchStore) stats() (int, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.commits, w.spent
}

// phases accumulates where the time of each host went, in order of first appearance.
type phases struct {
	names []string
	sum   map[string]time.Duration
	hosts int
}

func (p *phases) add(name string, d time.Duration) {
	if p.sum == nil {
		p.sum = map[string]time.Duration{}
	}
	if _, ok := p.sum[name]; !ok {
		p.names = append(p.names, name)
	}
	p.sum[name] += d
}

func (p *phases) merge(q *phases) {
	for _, n := range q.names {
		p.add(n, q.sum[n])
	}
	p.hosts += q.hosts
}

// addOurs splits a host's time at the task's own timestamps into consecutive segments.
func (p *phases) addOurs(s oursSample) {
	t := s.task
	if t.StartedAt == nil || len(t.Steps) == 0 || s.end.IsZero() {
		return
	}
	p.hosts++
	p.add("CreateHost call (tx + fsync)", s.call)
	p.add("queue: pickup + claim tx", t.StartedAt.Sub(s.ret))
	p.add("claim commit + load host", t.Steps[0].At.Sub(*t.StartedAt))
	last := t.Steps[0].At
	for i, st := range t.Steps {
		if i > 0 {
			p.add("progress commits between steps", st.At.Sub(last))
		}
		if st.End == nil {
			return
		}
		p.add("step: "+st.Name+" (incl. its progress commit)", st.End.Sub(st.At))
		last = *st.End
	}
	p.add("after last step: progress + status + finish commits", s.end.Sub(last))
}

func (p *phases) addDirect(s directSample) {
	if s.end.IsZero() {
		return
	}
	p.hosts++
	p.add("volume + container create", s.create)
	p.add("container start", s.start)
	p.add("exec `true` until exit 0", s.ready)
	p.add("exec attempts (count)", time.Duration(s.attempts))
}

// sideResult is one side (ours or direct) of one case (single or concurrent).
type sideResult struct {
	walls      []time.Duration // one per round: until every host of the round was ready
	hosts      []time.Duration // every host's own time
	phases     phases
	commits    int
	commitTime time.Duration
}

// Report holds every measurement of a run.
type Report struct {
	N, Rounds                int
	Image                    string
	BatchDelay               time.Duration
	runID, userID            string // labels of what the run created
	singleOurs, singleDirect sideResult
	concOurs, concDirect     sideResult
}

func (r *Report) side(single, ours bool) *sideResult {
	switch {
	case single && ours:
		return &r.singleOurs
	case single:
		return &r.singleDirect
	case ours:
		return &r.concOurs
	default:
		return &r.concDirect
	}
}

// Row is one line of the result table.
type Row struct {
	Case         string
	Ours, Direct time.Duration
}

// Ratio is ours over direct.
func (r Row) Ratio() float64 {
	if r.Direct <= 0 {
		return math.Inf(1)
	}
	return float64(r.Ours) / float64(r.Direct)
}

// Pass reports whether the ratio meets Target.
func (r Row) Pass() bool { return r.Ours > 0 && r.Ratio() <= Target }

// Rows are the table's rows (only those with data on both sides).
func (r *Report) Rows() []Row {
	var rows []Row
	if len(r.singleOurs.hosts) > 0 && len(r.singleDirect.hosts) > 0 {
		rows = append(rows,
			Row{fmt.Sprintf("1 host, median of %d", len(r.singleOurs.hosts)), median(r.singleOurs.hosts), median(r.singleDirect.hosts)},
			Row{fmt.Sprintf("1 host, max of %d", len(r.singleOurs.hosts)), slices.Max(r.singleOurs.hosts), slices.Max(r.singleDirect.hosts)})
	}
	if len(r.concOurs.walls) > 0 && len(r.concDirect.walls) > 0 {
		rows = append(rows,
			Row{fmt.Sprintf("%d at once, all ready (median of %d rounds)", r.N, len(r.concOurs.walls)), median(r.concOurs.walls), median(r.concDirect.walls)},
			Row{fmt.Sprintf("%d at once, per-host p50", r.N), percentile(r.concOurs.hosts, 50), percentile(r.concDirect.hosts, 50)},
			Row{fmt.Sprintf("%d at once, per-host p99", r.N), percentile(r.concOurs.hosts, 99), percentile(r.concDirect.hosts, 99)})
	}
	return rows
}

// Table renders the rows as a Markdown table.
func (r *Report) Table() string {
	var sb strings.Builder
	sb.WriteString("| case | ours | direct | ratio | target | verdict |\n")
	sb.WriteString("|---|---:|---:|---:|---|---|\n")
	for _, row := range r.Rows() {
		verdict := "PASS"
		if !row.Pass() {
			verdict = "MISS"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %.2f× | ≤ %.1f× | %s |\n",
			row.Case, fmtDur(row.Ours), fmtDur(row.Direct), row.Ratio(), Target, verdict)
	}
	return sb.String()
}

// Breakdown renders where each side spent its time, as means per host.
func (r *Report) Breakdown() string {
	var sb strings.Builder
	for _, c := range []struct {
		title string
		s     *sideResult
	}{
		{"ours, 1 host", &r.singleOurs}, {"direct, 1 host", &r.singleDirect},
		{fmt.Sprintf("ours, %d at once", r.N), &r.concOurs}, {fmt.Sprintf("direct, %d at once", r.N), &r.concDirect},
	} {
		p := &c.s.phases
		if p.hosts == 0 {
			continue
		}
		fmt.Fprintf(&sb, "%s (mean per host over %d hosts):\n", c.title, p.hosts)
		var outside time.Duration
		for _, n := range p.names {
			if strings.HasSuffix(n, "(count)") {
				fmt.Fprintf(&sb, "  %-66s %8.2f\n", n, float64(p.sum[n])/float64(p.hosts))
				continue
			}
			if !strings.HasPrefix(n, "step: ") {
				outside += p.sum[n]
			}
			fmt.Fprintf(&sb, "  %-66s %8s\n", n, fmtDur(p.sum[n]/time.Duration(p.hosts)))
		}
		if c.s.commits > 0 {
			fmt.Fprintf(&sb, "  %-66s %8s\n", "= service + store time outside the steps", fmtDur(outside/time.Duration(p.hosts)))
		}
		if c.s.commits > 0 {
			fmt.Fprintf(&sb, "  %-66s %8.1f\n", "store updates per host", float64(c.s.commits)/float64(p.hosts))
			fmt.Fprintf(&sb, "  %-66s %8s\n", "mean store update latency (batch wait + fsync)", fmtDur(c.s.commitTime/time.Duration(c.s.commits)))
		}
	}
	return sb.String()
}

func (r *Report) String() string {
	return fmt.Sprintf("host creation until exec-ready: ours (app.Service + bbolt MaxBatchDelay %s + runtime.Docker) vs direct Docker client\nimage %s, %d rounds\n\n%s\n%s",
		r.BatchDelay, r.Image, r.Rounds, r.Table(), r.Breakdown())
}

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

// percentile is the nearest-rank percentile of d (0 when empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.2fms", ms)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
