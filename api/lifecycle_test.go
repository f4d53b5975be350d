package api_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
)

func testImage() string {
	if v := os.Getenv("CCP_TEST_IMAGE"); v != "" {
		return v
	}
	return "cloud-cli-proxy/managed-test:latest"
}

// engine returns the real Docker runtime and a raw client for acting behind our back. Without
// an engine or the test image it skips, or fails when CI=true.
func engine(t *testing.T) (*runtime.Docker, *client.Client) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rt, err := runtime.NewDocker(ctx, runtime.Config{})
	if err != nil {
		fail("docker client: %v", err)
		return nil, nil
	}
	if err := rt.Ping(ctx); err != nil {
		fail("docker engine unreachable: %v", err)
		return nil, nil
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fail("docker client: %v", err)
		return nil, nil
	}
	t.Cleanup(func() { cli.Close(); rt.Close() })
	if _, err := cli.ImageInspect(ctx, testImage()); err != nil {
		fail("test image %s missing (bash deploy/testimage/build.sh): %v", testImage(), err)
		return nil, nil
	}
	return rt, cli
}

func withImage() envOption {
	return withConfig(func(c *app.Config) { c.ManagedImage = testImage(); c.StopTimeout = 2 * time.Second })
}

// taskOf returns the task id from a 202 host action.
func (e *env) action(method, path string) string {
	e.t.Helper()
	var out struct {
		Task struct{ ID string }
	}
	e.do(method, path, e.admin, nil, 202, &out)
	return out.Task.ID
}

func (e *env) waitTask(id string) app.Task {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t, err := e.svc.WaitTask(ctx, id)
	if err != nil {
		e.t.Fatalf("task %s: %v (last state %s)", id, err, t.State)
	}
	return t
}

func (e *env) mustSucceed(id string) {
	e.t.Helper()
	if t := e.waitTask(id); t.State != app.TaskSucceeded {
		e.t.Fatalf("task %s (%s) %s: %+v", id, t.Kind, t.State, t.Error)
	}
}

// newRunningHost creates a host through the API and waits for its container to run.
func (e *env) newRunningHost(userID string) (hostID string) {
	e.t.Helper()
	var out struct {
		Host struct{ ID string }
		Task struct{ ID string }
	}
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": userID, "memory_mb": 256, "cpu": 0.5, "pids": 256}, 201, &out)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rt, err := runtime.NewDocker(ctx, runtime.Config{})
		if err == nil {
			_ = rt.Remove(ctx, out.Host.ID, false)
			rt.Close()
		}
	})
	e.mustSucceed(out.Task.ID)
	return out.Host.ID
}

func execOut(t *testing.T, rt *runtime.Docker, hostID string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, stderr, code, err := rt.Exec(ctx, hostID, cmd, "")
	if err != nil || code != 0 {
		t.Fatalf("exec %v: code %d err %v stderr %s", cmd, code, err, stderr)
	}
	return strings.TrimSpace(string(stdout))
}

func inspectState(t *testing.T, rt *runtime.Docker, hostID string) app.RuntimeHost {
	t.Helper()
	h, err := rt.Inspect(context.Background(), hostID)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHostLifecycleOnRealEngine(t *testing.T) {
	rt, cli := engine(t)
	e := newEnv(t, withRuntime(rt), withImage())
	uid, _ := e.user("alice", "user")
	hostID := e.newRunningHost(uid)
	ctx := context.Background()

	h := inspectState(t, rt, hostID)
	if h.State != app.StateRunning {
		t.Fatalf("container state %s, want running", h.State)
	}
	var view struct {
		Status string
		Image  string
	}
	e.do("GET", "/v1/admin/hosts/"+hostID, e.admin, nil, 200, &view)
	if view.Status != string(app.HostRunning) || view.Image != testImage() {
		t.Fatalf("host view %+v", view)
	}
	// Limits and hardening are visible in the engine's inspect.
	info, err := cli.ContainerInspect(ctx, h.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if info.HostConfig.Memory != 256<<20 || info.HostConfig.NanoCPUs != 5e8 || info.HostConfig.PidsLimit == nil || *info.HostConfig.PidsLimit != 256 {
		t.Fatalf("limits: memory %d nanocpus %d pids %v", info.HostConfig.Memory, info.HostConfig.NanoCPUs, info.HostConfig.PidsLimit)
	}
	if info.HostConfig.Privileged || string(info.HostConfig.NetworkMode) != "none" {
		t.Fatalf("privileged %v network %s", info.HostConfig.Privileged, info.HostConfig.NetworkMode)
	}
	if got := execOut(t, rt, hostID, "id", "-u"); got != "1000" {
		t.Fatalf("exec runs as uid %s, want 1000", got)
	}

	// Second action while one runs: 409 naming the task.
	stopTask := e.action("POST", "/v1/admin/hosts/"+hostID+"/stop")
	if r := e.raw("POST", "/v1/admin/hosts/"+hostID+"/start", e.admin, nil); r.Status != 409 || !strings.Contains(string(r.Body), stopTask) {
		// The stop may already have finished on a fast engine; then the start is legal.
		if r.Status != 202 {
			t.Fatalf("concurrent action: %d %s", r.Status, r.Body)
		}
		e.waitIdle(hostID)
		e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostID+"/stop"))
	} else {
		e.mustSucceed(stopTask)
	}
	if s := inspectState(t, rt, hostID).State; s == app.StateRunning {
		t.Fatalf("after stop container is %s", s)
	}
	// Stop of a stopped host succeeds without change (idempotent).
	e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostID+"/stop"))
	e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostID+"/start"))
	if s := inspectState(t, rt, hostID).State; s != app.StateRunning {
		t.Fatalf("after start container is %s", s)
	}
	e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostID+"/start"))

	// Rebuild keeps the home volume: a file written before is there after, in a new container.
	execOut(t, rt, hostID, "sh", "-c", "echo kept > /home/workspace/marker")
	before := inspectState(t, rt, hostID).ContainerID
	e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostID+"/rebuild"))
	after := inspectState(t, rt, hostID)
	if after.ContainerID == before || after.State != app.StateRunning {
		t.Fatalf("rebuild: container %s -> %s state %s", before, after.ContainerID, after.State)
	}
	if got := execOut(t, rt, hostID, "cat", "/home/workspace/marker"); got != "kept" {
		t.Fatalf("home after rebuild: %q", got)
	}

	// Delete removes container and volume, then the host record.
	e.mustSucceed(e.action("DELETE", "/v1/admin/hosts/"+hostID))
	if s := inspectState(t, rt, hostID).State; s != app.StateMissing {
		t.Fatalf("after delete container is %s", s)
	}
	if _, err := cli.VolumeInspect(ctx, runtime.VolumeName(hostID)); err == nil {
		t.Fatal("home volume still exists after delete")
	}
	e.do("GET", "/v1/admin/hosts/"+hostID, e.admin, nil, 404, nil)
}

func TestDeleteKeepHome(t *testing.T) {
	rt, cli := engine(t)
	e := newEnv(t, withRuntime(rt), withImage())
	uid, _ := e.user("keeper", "user")
	hostID := e.newRunningHost(uid)
	t.Cleanup(func() { _ = cli.VolumeRemove(context.Background(), runtime.VolumeName(hostID), true) })
	e.mustSucceed(e.action("DELETE", "/v1/admin/hosts/"+hostID+"?keep_home=true"))
	if s := inspectState(t, rt, hostID).State; s != app.StateMissing {
		t.Fatalf("container %s after delete", s)
	}
	if _, err := cli.VolumeInspect(context.Background(), runtime.VolumeName(hostID)); err != nil {
		t.Fatalf("keep_home=true removed the volume: %v", err)
	}
}

// TestReconcilerHealsDrift removes one container and stops another behind the server's back;
// the engine's event stream makes the reconciler repair both within seconds.
func TestReconcilerHealsDrift(t *testing.T) {
	rt, cli := engine(t)
	e := newEnv(t, withRuntime(rt), withImage(), withConfig(func(c *app.Config) { c.ReconcileInterval = 3 * time.Second }))
	uid, _ := e.user("drift", "user")
	removed := e.newRunningHost(uid)
	stopped := e.newRunningHost(uid)
	ctx := context.Background()
	oldRemoved := inspectState(t, rt, removed).ContainerID
	if err := cli.ContainerRemove(ctx, oldRemoved, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	timeout := 2
	if err := cli.ContainerStop(ctx, inspectState(t, rt, stopped).ContainerID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		a, b := inspectState(t, rt, removed), inspectState(t, rt, stopped)
		if a.State == app.StateRunning && a.ContainerID != oldRemoved && b.State == app.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healed: removed host %s (%s), stopped host %s", a.State, a.ContainerID, b.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each correction is an event. A removed container may be seen missing (recreate) or,
	// caught mid-removal, not running (restart, whose start then recreates it).
	for _, id := range []string{removed, stopped} {
		var page app.EventPage
		e.do("GET", "/v1/admin/events?limit=100&host_id="+id, e.admin, nil, 200, &page)
		found := false
		for _, ev := range page.Events {
			found = found || strings.HasPrefix(ev.Action, "reconcile.")
		}
		if !found {
			t.Fatalf("no reconcile event for host %s: %+v", id, page.Events)
		}
	}
}

// TestRestartLeavesRunningHostsUntouched restarts the service over the same database with 10
// running hosts: no container is recreated or restarted and no task is queued.
func TestRestartLeavesRunningHostsUntouched(t *testing.T) {
	rt, _ := engine(t)
	e := newEnv(t, withRuntime(rt), withImage())
	uid, _ := e.user("tenhosts", "user")
	type snap struct{ id, started string }
	before := map[string]snap{}
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, e.newRunningHost(uid))
	}
	for _, id := range ids {
		h := inspectState(t, rt, id)
		before[id] = snap{h.ContainerID, h.StartedAt.String()}
	}
	// A second service over the same store, as after a server restart.
	svc2, err := app.New(app.Config{JWTSecret: []byte(strings.Repeat("s", 40)), BcryptCost: 4, ManagedImage: testImage(),
		ReconcileInterval: -1}, app.Deps{Store: e.db, Runtime: rt, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := svc2.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()
	rep, err := svc2.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recreated)+len(rep.Restarted)+len(rep.Stopped) != 0 {
		t.Fatalf("reconcile after restart acted: %+v", rep)
	}
	for _, id := range ids {
		h := inspectState(t, rt, id)
		if h.State != app.StateRunning || (snap{h.ContainerID, h.StartedAt.String()}) != before[id] {
			t.Fatalf("host %s changed: %+v vs %+v", id, h, before[id])
		}
	}
	var tasks struct{ Tasks []app.Task }
	e.do("GET", "/v1/admin/tasks?limit=100", e.admin, nil, 200, &tasks)
	for _, tk := range tasks.Tasks {
		if tk.State == app.TaskQueued || tk.State == app.TaskRunning {
			t.Fatalf("task %s %s after restart", tk.Kind, tk.State)
		}
	}
}

func TestExpiryStopsHosts(t *testing.T) {
	rt, _ := engine(t)
	e := newEnv(t, withRuntime(rt), withImage())
	uid, userJWT := e.user("shortlived", "user")
	hostID := e.newRunningHost(uid)
	exp := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
	e.do("PUT", "/v1/admin/users/"+uid+"/expiry", e.admin, map[string]any{"expires_at": exp}, 200, nil)
	if ids, err := e.svc.ExpireUsers(context.Background()); err != nil || len(ids) != 0 {
		t.Fatalf("expired too early: %v %v", ids, err)
	}
	e.clock.Add(time.Hour)
	ids, err := e.svc.ExpireUsers(context.Background())
	if err != nil || len(ids) != 1 || ids[0] != uid {
		t.Fatalf("expire: %v %v", ids, err)
	}
	e.waitIdle(hostID)
	if s := inspectState(t, rt, hostID).State; s == app.StateRunning {
		t.Fatalf("expired user's host still %s", s)
	}
	var u struct{ Status app.UserStatus }
	e.do("GET", "/v1/admin/users/"+uid, e.admin, nil, 200, &u)
	if u.Status != app.UserExpired {
		t.Fatalf("status %s", u.Status)
	}
	e.do("GET", "/v1/user/hosts", userJWT, nil, 401, nil)
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": "shortlived", "password": "password-shortlived"}, 401, nil)
	var page app.EventPage
	e.do("GET", "/v1/admin/events?type=user.expired&user_id="+uid, e.admin, nil, 200, &page)
	if len(page.Events) != 1 {
		t.Fatalf("user.expired events: %d", len(page.Events))
	}
}

// TestEngineDown points the runtime at an engine that is not there: reads work, health shows
// docker failing, actions fail with runtime_unavailable.
func TestEngineDown(t *testing.T) {
	rt, err := runtime.NewDocker(context.Background(), runtime.Config{Host: "unix:///nonexistent/docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withRuntime(rt))
	uid, _ := e.user("nodocker", "user")
	var out struct {
		Host struct{ ID string }
		Task struct{ ID string }
	}
	e.do("POST", "/v1/admin/hosts", e.admin, map[string]any{"user_id": uid}, 201, &out)
	tk := e.waitTask(out.Task.ID)
	if tk.State != app.TaskFailed || tk.Error == nil || tk.Error.Code != app.CodeRuntimeUnavailable {
		t.Fatalf("task %+v", tk)
	}
	if strings.Contains(tk.Error.Message, "goroutine") || strings.Contains(tk.Error.Message, ".go:") {
		t.Fatalf("raw stack in task error: %s", tk.Error.Message)
	}
	var h struct {
		Status string
		Checks map[string]string
	}
	e.do("GET", "/healthz", "", nil, 200, &h)
	if h.Status != "degraded" || h.Checks["database"] != "ok" || !strings.HasPrefix(h.Checks["docker"], "error") {
		t.Fatalf("healthz %+v", h)
	}
	e.do("GET", "/v1/admin/hosts/"+out.Host.ID, e.admin, nil, 200, nil)
	e.do("GET", "/v1/admin/users", e.admin, nil, 200, nil)
	_, err = e.svc.Reconcile(context.Background())
	if ae := app.AsError(err); err == nil || ae.Code != app.CodeRuntimeUnavailable {
		t.Fatalf("reconcile with engine down: %v", err)
	}
	fmt.Fprint(os.Stderr) // keep fmt imported for debugging helpers
}
