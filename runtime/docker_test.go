package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// testImage is the image the engine tests run: $CCP_TEST_IMAGE, default the product's test
// image built by deploy/testimage/build.sh.
func testImage() string {
	if img := os.Getenv("CCP_TEST_IMAGE"); img != "" {
		return img
	}
	return "cloud-cli-proxy/managed-test:latest"
}

// requireDocker returns a runtime on the local engine, or skips the test (t.Fatal when
// CI=true) naming what is missing: the engine or the test image.
func requireDocker(t *testing.T) *Docker {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := NewDocker(ctx, Config{})
	if err != nil {
		fail("docker client cannot be configured: %v", err)
		return nil
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Ping(ctx); err != nil {
		fail("docker engine unreachable (DOCKER_HOST=%q): %v", os.Getenv("DOCKER_HOST"), err)
		return nil
	}
	if _, err := d.cli.ImageInspect(ctx, testImage()); err != nil {
		fail("test image %s missing on the engine (build it with deploy/testimage/build.sh or set CCP_TEST_IMAGE): %v", testImage(), err)
		return nil
	}
	return d
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newSpec returns a spec with unique ids and registers cleanup of its container and volume.
func newSpec(t *testing.T, d *Docker) app.HostSpec {
	t.Helper()
	short := "t" + randHex(t, 5)
	spec := app.HostSpec{
		HostID:   "test-" + randHex(t, 8),
		UserID:   "user-test",
		ShortID:  short,
		Hostname: "ws-" + short,
		Image:    testImage(),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Remove(ctx, spec.HostID, false); err != nil {
			t.Errorf("cleanup of host %s: %v", spec.HostID, err)
		}
	})
	return spec
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func codeOf(err error) app.ErrorCode {
	var re *app.RuntimeError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func mustStartReady(t *testing.T, ctx context.Context, d *Docker, spec app.HostSpec) app.RuntimeHost {
	t.Helper()
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := d.Start(ctx, spec.HostID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := d.WaitExecReady(ctx, spec.HostID); err != nil {
		t.Fatalf("WaitExecReady: %v", err)
	}
	h, err := d.Inspect(ctx, spec.HostID)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return h
}

func TestCreateStartInspect(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)

	h, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if h.State != app.StateCreated || h.HostID != spec.HostID || h.UserID != spec.UserID ||
		h.ContainerID == "" || h.Image != spec.Image || h.Pid != 0 {
		t.Fatalf("after Create: %+v", h)
	}
	if err := d.Start(ctx, spec.HostID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	h, err = d.Inspect(ctx, spec.HostID)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if h.State != app.StateRunning || h.Pid <= 0 || h.StartedAt.IsZero() {
		t.Fatalf("after Start: %+v", h)
	}
	if want := map[string]string{"": "none", "none": "none", "bridge": "bridge"}[spec.Network]; h.Network != want {
		t.Fatalf("Inspect says network %q for a container created with %q", h.Network, spec.Network)
	}

	info, err := d.cli.ContainerInspect(ctx, h.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "/"+ContainerName(spec.ShortID) {
		t.Errorf("container name %q", info.Name)
	}
	want := map[string]string{LabelManaged: "true", LabelHostID: spec.HostID, LabelUserID: spec.UserID, LabelShortID: spec.ShortID}
	for k, v := range want {
		if info.Config.Labels[k] != v {
			t.Errorf("container label %s=%q, want %q", k, info.Config.Labels[k], v)
		}
	}
	vol, err := d.cli.VolumeInspect(ctx, VolumeName(spec.HostID))
	if err != nil {
		t.Fatalf("home volume: %v", err)
	}
	for k, v := range want {
		if vol.Labels[k] != v {
			t.Errorf("volume label %s=%q, want %q", k, vol.Labels[k], v)
		}
	}

	all, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	i := slices.IndexFunc(all, func(x app.RuntimeHost) bool { return x.HostID == spec.HostID })
	if i < 0 || all[i].State != app.StateRunning || all[i].ContainerID != h.ContainerID || all[i].Pid != h.Pid {
		t.Fatalf("List misses or misreports the host: %+v", all)
	}

	if err := d.Stop(ctx, spec.HostID, 2*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	h, err = d.Inspect(ctx, spec.HostID)
	if err != nil || h.State != app.StateExited || h.Pid != 0 {
		t.Fatalf("after Stop: %+v, %v", h, err)
	}
}

func TestLimitsAndHardening(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)

	explicit := newSpec(t, d)
	explicit.CPU, explicit.MemoryMB, explicit.PIDs = 1.5, 256, 100
	defaults := newSpec(t, d)
	bridge := newSpec(t, d)
	bridge.Network = "bridge"

	check := func(spec app.HostSpec, nano, mem, pids int64, netMode string) {
		t.Helper()
		h, err := d.Create(ctx, spec)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		info, err := d.cli.ContainerInspect(ctx, h.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		hc := info.HostConfig
		if hc.NanoCPUs != nano || hc.Memory != mem || hc.PidsLimit == nil || *hc.PidsLimit != pids {
			t.Errorf("limits: NanoCPUs=%d Memory=%d PidsLimit=%v, want %d %d %d", hc.NanoCPUs, hc.Memory, hc.PidsLimit, nano, mem, pids)
		}
		if hc.MemorySwap != mem {
			t.Errorf("MemorySwap=%d, want %d (no swap)", hc.MemorySwap, mem)
		}
		if !slices.Equal(hc.CapDrop, []string{"ALL"}) || len(hc.CapAdd) != 0 {
			t.Errorf("CapDrop=%v CapAdd=%v", hc.CapDrop, hc.CapAdd)
		}
		if !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
			t.Errorf("SecurityOpt=%v", hc.SecurityOpt)
		}
		if hc.Privileged {
			t.Error("container is privileged")
		}
		if string(hc.NetworkMode) != netMode {
			t.Errorf("NetworkMode=%q, want %q", hc.NetworkMode, netMode)
		}
		if hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
			t.Errorf("RestartPolicy=%v", hc.RestartPolicy)
		}
		if info.Config.User != DefaultUser || info.Config.Hostname != spec.Hostname {
			t.Errorf("User=%q Hostname=%q", info.Config.User, info.Config.Hostname)
		}
		if len(hc.Binds) != 0 || len(hc.Mounts) != 1 || hc.Mounts[0].Source != VolumeName(spec.HostID) || hc.Mounts[0].Target != HomeDir {
			t.Errorf("mounts: Binds=%v Mounts=%+v", hc.Binds, hc.Mounts)
		}
		for _, m := range info.Mounts {
			if strings.Contains(m.Source, "docker.sock") || strings.Contains(m.Destination, "docker.sock") {
				t.Errorf("docker socket mounted: %+v", m)
			}
		}
	}
	check(explicit, 1_500_000_000, 256<<20, 100, "none")
	check(defaults, 1_000_000_000, 1024<<20, 512, "none")
	check(bridge, 1_000_000_000, 1024<<20, 512, "bridge")
}

func TestExec(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)

	if _, _, _, err := d.Exec(ctx, spec.HostID, []string{"true"}, ""); codeOf(err) != CodeContainerMissing {
		t.Fatalf("Exec on missing host: %v", err)
	}
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := d.Exec(ctx, spec.HostID, []string{"true"}, ""); codeOf(err) != CodeContainerNotRunning {
		t.Fatalf("Exec in created container: %v", err)
	}
	if err := d.WaitExecReady(ctx, spec.HostID); codeOf(err) != CodeContainerNotRunning {
		t.Fatalf("WaitExecReady on never-started container: %v", err)
	}
	if err := d.Start(ctx, spec.HostID); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitExecReady(ctx, spec.HostID); err != nil {
		t.Fatalf("WaitExecReady: %v", err)
	}

	out, errOut, code, err := d.Exec(ctx, spec.HostID, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "")
	if err != nil || string(out) != "out\n" || string(errOut) != "err\n" || code != 3 {
		t.Fatalf("Exec: stdout=%q stderr=%q code=%d err=%v", out, errOut, code, err)
	}
	out, _, code, err = d.Exec(ctx, spec.HostID, []string{"id", "-u"}, "")
	if err != nil || code != 0 || strings.TrimSpace(string(out)) != "1000" {
		t.Fatalf("default user: %q %d %v", out, code, err)
	}
	out, _, code, err = d.Exec(ctx, spec.HostID, []string{"id", "-u"}, "0")
	if err != nil || code != 0 || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("user 0: %q %d %v", out, code, err)
	}
	out, _, code, err = d.Exec(ctx, spec.HostID, []string{"pwd"}, "")
	if err != nil || code != 0 || strings.TrimSpace(string(out)) != HomeDir {
		t.Fatalf("working dir: %q %d %v", out, code, err)
	}
	if _, _, code, err = d.Exec(ctx, spec.HostID, []string{"/no/such/binary"}, ""); err != nil || code == 0 {
		t.Fatalf("missing binary: code=%d err=%v", code, err)
	}
	// No network but loopback.
	out, _, _, err = d.Exec(ctx, spec.HostID, []string{"sh", "-c", "ls /sys/class/net"}, "")
	if err != nil || strings.Fields(string(out)) == nil || strings.TrimSpace(string(out)) != "lo" {
		t.Errorf("interfaces in network mode none: %q %v", out, err)
	}
}

func TestHomeVolumeLifecycle(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)

	first := mustStartReady(t, ctx, d, spec)
	_, errOut, code, err := d.Exec(ctx, spec.HostID, []string{"sh", "-c", "echo kept > " + HomeDir + "/marker"}, "")
	if err != nil || code != 0 {
		t.Fatalf("write marker: code=%d stderr=%q err=%v", code, errOut, err)
	}
	if err := d.Remove(ctx, spec.HostID, true); err != nil {
		t.Fatalf("Remove(keepHome): %v", err)
	}
	if h, err := d.Inspect(ctx, spec.HostID); err != nil || h.State != app.StateMissing {
		t.Fatalf("after Remove: %+v %v", h, err)
	}
	if _, err := d.cli.VolumeInspect(ctx, VolumeName(spec.HostID)); err != nil {
		t.Fatalf("home volume gone after Remove(keepHome=true): %v", err)
	}

	second := mustStartReady(t, ctx, d, spec)
	if second.ContainerID == first.ContainerID {
		t.Fatal("container was not recreated")
	}
	out, _, code, err := d.Exec(ctx, spec.HostID, []string{"cat", HomeDir + "/marker"}, "")
	if err != nil || code != 0 || string(out) != "kept\n" {
		t.Fatalf("marker after recreate: %q code=%d err=%v", out, code, err)
	}

	if err := d.Remove(ctx, spec.HostID, false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := d.cli.ContainerInspect(ctx, second.ContainerID); !isNotFound(err) {
		t.Fatalf("container still there: %v", err)
	}
	if _, err := d.cli.VolumeInspect(ctx, VolumeName(spec.HostID)); !isNotFound(err) {
		t.Fatalf("volume still there: %v", err)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)

	if h, err := d.Inspect(ctx, spec.HostID); err != nil || h.State != app.StateMissing || h.HostID != spec.HostID {
		t.Fatalf("Inspect missing: %+v %v", h, err)
	}
	if err := d.Start(ctx, spec.HostID); codeOf(err) != CodeContainerMissing {
		t.Fatalf("Start missing: %v", err)
	}
	if err := d.Stop(ctx, spec.HostID, time.Second); codeOf(err) != CodeContainerMissing {
		t.Fatalf("Stop missing: %v", err)
	}
	if err := d.Remove(ctx, spec.HostID, false); err != nil {
		t.Fatalf("Remove missing: %v", err)
	}

	// Concurrent creates converge on one container.
	var wg sync.WaitGroup
	ids := make([]string, 3)
	errs := make([]error, 3)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := d.Create(ctx, spec)
			ids[i], errs[i] = h.ContainerID, err
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("concurrent Create: ids=%v errs=%v", ids, errs)
		}
	}
	again := spec
	again.MemoryMB = 64 // an existing container is left as it is
	if h, err := d.Create(ctx, again); err != nil || h.ContainerID != ids[0] {
		t.Fatalf("second Create: %+v %v", h, err)
	}
	for range 2 {
		if err := d.Start(ctx, spec.HostID); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	for range 2 {
		if err := d.Stop(ctx, spec.HostID, 2*time.Second); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	if h, _ := d.Inspect(ctx, spec.HostID); h.State != app.StateExited {
		t.Fatalf("state after Stop: %+v", h)
	}
	if err := d.Start(ctx, spec.HostID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	for range 2 {
		if err := d.Remove(ctx, spec.HostID, false); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if h, _ := d.Inspect(ctx, spec.HostID); h.State != app.StateMissing {
		t.Fatalf("state after Remove: %+v", h)
	}
}

func TestEventsOnStopBehindBack(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)
	h := mustStartReady(t, ctx, d, spec)

	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, errs := d.Events(ectx)

	// Stop it with the raw client, behind the runtime's back.
	timeout := 2
	if err := d.cli.ContainerStop(ctx, h.ContainerID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	seen := false
	for !seen {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("event channel closed early: %v", <-errs)
			}
			if ev.HostID == spec.HostID && (ev.Action == "die" || ev.Action == "stop") {
				if ev.ContainerID != h.ContainerID || ev.At.IsZero() {
					t.Fatalf("event: %+v", ev)
				}
				seen = true
			}
		case err := <-errs:
			t.Fatalf("event stream error: %v", err)
		case <-deadline.C:
			t.Fatal("no die/stop event within 20s")
		}
	}

	// Ending ctx closes both channels without an error.
	cancel()
	closed := time.NewTimer(10 * time.Second)
	defer closed.Stop()
	for evs != nil || errs != nil {
		select {
		case _, ok := <-evs:
			if !ok {
				evs = nil
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
			} else if err != nil {
				t.Fatalf("error after cancel: %v", err)
			}
		case <-closed.C:
			t.Fatal("channels not closed after ctx ended")
		}
	}
}

func TestImageMissing(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)
	spec.Image = "cloud-cli-proxy/no-such-image-" + randHex(t, 4) + ":never"

	_, err := d.Create(ctx, spec)
	var re *app.RuntimeError
	if !errors.As(err, &re) || re.Code != app.CodeImageMissing || !strings.Contains(re.Message, spec.Image) {
		t.Fatalf("Create with missing image: %v", err)
	}
	if _, err := d.cli.VolumeInspect(ctx, VolumeName(spec.HostID)); !isNotFound(err) {
		t.Errorf("a failed Create left a volume behind: %v", err)
	}
}

func TestUnreachableEngine(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	sock := "unix:///nonexistent-" + randHex(t, 4) + "/docker.sock"
	d, err := NewDocker(ctx, Config{Host: sock})
	if err != nil {
		t.Fatalf("NewDocker: %v", err)
	}
	defer d.Close()

	check := func(what string, err error) {
		t.Helper()
		var re *app.RuntimeError
		if !errors.As(err, &re) || re.Code != app.CodeRuntimeUnavailable || !errors.Is(err, app.ErrRuntimeUnavailable) {
			t.Errorf("%s: %v", what, err)
		}
	}
	check("Ping", d.Ping(ctx))
	_, err = d.Create(ctx, app.HostSpec{HostID: "h", ShortID: "s", Image: "i"})
	check("Create", err)
	check("Start", d.Start(ctx, "h"))
	check("Stop", d.Stop(ctx, "h", time.Second))
	check("Remove", d.Remove(ctx, "h", false))
	_, err = d.Inspect(ctx, "h")
	check("Inspect", err)
	_, err = d.List(ctx)
	check("List", err)
	_, _, _, err = d.Exec(ctx, "h", []string{"true"}, "")
	check("Exec", err)
	check("WaitExecReady", d.WaitExecReady(ctx, "h"))

	evs, errs := d.Events(ctx)
	select {
	case err := <-errs:
		check("Events", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Events: no error from an unreachable engine")
	}
	if _, ok := <-evs; ok {
		t.Error("Events: event channel not closed after the error")
	}
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	if translate("x", nil) != nil {
		t.Fatal("nil error translated")
	}
	re := &app.RuntimeError{Code: "keep", Message: "m"}
	if translate("x", re) != error(re) {
		t.Fatal("RuntimeError not passed through")
	}
	if c := codeOf(translate("start", errors.New("Error response from daemon: OCI runtime start failed: container init was OOM-killed (memory limit too low?)"))); c != app.CodeOutOfMemory {
		t.Fatalf("OOM: %s", c)
	}
	err := translate("start container for host h", errors.New("Error response from daemon: boom\nsecond line"))
	var r *app.RuntimeError
	if !errors.As(err, &r) || r.Code != app.CodeRuntimeError || r.Message != "start container for host h: boom second line" {
		t.Fatalf("generic: %#v", err)
	}
	if c := codeOf(translate("x", context.Canceled)); c != app.CodeRuntimeError {
		t.Fatalf("canceled: %s", c)
	}
	if err := translate("x", errors.New("dial unix /x: connect: connection refused")); codeOf(err) != app.CodeRuntimeUnavailable || !errors.Is(err, app.ErrRuntimeUnavailable) {
		t.Fatalf("connection refused: %v", err)
	}
	for status, want := range map[string]string{
		"created": app.StateCreated, "running": app.StateRunning, "exited": app.StateExited,
		"paused": app.StatePaused, "restarting": app.StateOther, "dead": app.StateOther, "removing": app.StateOther,
	} {
		if got := mapState(status); got != want {
			t.Errorf("mapState(%q)=%q, want %q", status, got, want)
		}
	}
}
