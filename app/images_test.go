package app_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// pullRuntime is the in-memory engine with images: present ones, and pulls that add an
// image or fail with a registry's message.
type pullRuntime struct {
	testenv.Runtime
	mu      sync.Mutex
	present map[string]bool
	pulls   []string
	refuse  string // the registry's message of a refused pull; "" pulls
}

func (r *pullRuntime) ImagePresent(_ context.Context, ref string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.present[ref], nil
}

func (r *pullRuntime) PullImage(_ context.Context, ref string, progress func(string)) error {
	r.mu.Lock()
	r.pulls = append(r.pulls, ref)
	refuse := r.refuse
	r.mu.Unlock()
	if refuse != "" {
		return &app.RuntimeError{Code: app.CodeImagePullFailed, Message: "pull image " + ref + ": " + refuse, Err: errors.New(refuse)}
	}
	progress("Pulling from cloud-cli-proxy/managed")
	progress("a1b2c3: Pull complete")
	progress("Status: Downloaded newer image for " + ref)
	r.mu.Lock()
	r.present[ref] = true
	r.mu.Unlock()
	return nil
}

func (r *pullRuntime) Create(ctx context.Context, s app.HostSpec) (app.RuntimeHost, error) {
	r.mu.Lock()
	ok := r.present[s.Image]
	r.mu.Unlock()
	if !ok {
		return app.RuntimeHost{}, &app.RuntimeError{Code: app.CodeImageMissing, Message: "image " + s.Image + " is not present"}
	}
	return r.Runtime.Create(ctx, s)
}

func pullEnv(t *testing.T, policy string, rt *pullRuntime) (context.Context, *app.Service, string) {
	t.Helper()
	env := testenv.NewService(t, testenv.WithRuntime(rt), testenv.WithConfig(func(c *app.Config) {
		c.ReconcileInterval, c.ImagePullPolicy, c.ManagedImage = -1, policy, "registry.example/managed:1"
	}))
	ctx := env.Start()
	u, err := env.Service.CreateUser(ctx, rulesSystem, app.CreateUserInput{Username: "puller", Password: "puller-password"})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, env.Service, u.ID
}

func createAndWait(t *testing.T, ctx context.Context, svc *app.Service, userID string) app.Task {
	t.Helper()
	hc, err := svc.CreateHost(ctx, rulesSystem, app.CreateHostInput{UserID: userID})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	task, err := svc.WaitTask(wctx, hc.Task.ID)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func stepNames(t app.Task) string {
	var b strings.Builder
	for _, s := range t.Steps {
		b.WriteString(s.Name + " [" + s.State + "]\n")
	}
	return b.String()
}

func TestPullPolicyMissingPullsWithProgressSteps(t *testing.T) {
	rt := &pullRuntime{present: map[string]bool{}}
	ctx, svc, uid := pullEnv(t, app.PullMissing, rt)
	task := createAndWait(t, ctx, svc, uid)
	if task.State != app.TaskSucceeded {
		t.Fatalf("task %s: %+v\n%s", task.State, task.Error, stepNames(task))
	}
	steps := stepNames(task)
	for _, want := range []string{"pull image registry.example/managed:1 (IMAGE_PULL_POLICY=missing) [done]",
		"pull: a1b2c3: Pull complete [done]", "create container [done]"} {
		if !strings.Contains(steps, want) {
			t.Errorf("steps lack %q:\n%s", want, steps)
		}
	}
	// The image is there now: the next host does not pull it again.
	if task := createAndWait(t, ctx, svc, uid); task.State != app.TaskSucceeded || strings.Contains(stepNames(task), "pull image") {
		t.Errorf("second host: %s\n%s", task.State, stepNames(task))
	}
	if len(rt.pulls) != 1 {
		t.Errorf("pulls = %v, want one", rt.pulls)
	}
}

func TestPullPolicyAlwaysPullsEveryTime(t *testing.T) {
	rt := &pullRuntime{present: map[string]bool{"registry.example/managed:1": true}}
	ctx, svc, uid := pullEnv(t, app.PullAlways, rt)
	for i := 0; i < 2; i++ {
		if task := createAndWait(t, ctx, svc, uid); task.State != app.TaskSucceeded {
			t.Fatalf("task %s: %+v", task.State, task.Error)
		}
	}
	if len(rt.pulls) != 2 {
		t.Errorf("pulls = %v, want two", rt.pulls)
	}
}

func TestPullPolicyNeverDoesNotPull(t *testing.T) {
	rt := &pullRuntime{present: map[string]bool{}}
	ctx, svc, uid := pullEnv(t, app.PullNever, rt)
	task := createAndWait(t, ctx, svc, uid)
	if task.State != app.TaskFailed || task.Error == nil || task.Error.Code != app.CodeImageMissing {
		t.Fatalf("task %s: %+v", task.State, task.Error)
	}
	if len(rt.pulls) != 0 || strings.Contains(stepNames(task), "pull") {
		t.Errorf("pulled with IMAGE_PULL_POLICY=never: %v\n%s", rt.pulls, stepNames(task))
	}
}

func TestPullRefusedIsTaskErrorWithRegistryMessage(t *testing.T) {
	const registry = "unauthorized: authentication required"
	rt := &pullRuntime{present: map[string]bool{}, refuse: registry}
	ctx, svc, uid := pullEnv(t, app.PullMissing, rt)
	task := createAndWait(t, ctx, svc, uid)
	if task.State != app.TaskFailed || task.Error == nil || task.Error.Code != app.CodeImagePullFailed ||
		!strings.Contains(task.Error.Message, registry) {
		t.Fatalf("task %s: %+v", task.State, task.Error)
	}
	if steps := stepNames(task); !strings.Contains(steps, "(IMAGE_PULL_POLICY=missing) [failed]") || strings.Contains(steps, "create container") {
		t.Errorf("steps:\n%s", steps)
	}
}

func TestStartupWarnsWhenImageAbsentAndPolicyNever(t *testing.T) {
	for _, policy := range []string{app.PullNever, app.PullMissing} {
		var buf testenv.Buffer
		env := testenv.NewService(t, testenv.WithRuntime(&pullRuntime{present: map[string]bool{}}),
			testenv.WithConfig(func(c *app.Config) { c.ImagePullPolicy, c.ManagedImage = policy, "registry.example/managed:1" }),
			testenv.WithDeps(func(d *app.Deps) { d.Logger = slog.New(slog.NewTextHandler(&buf, nil)) }))
		if env.Service.CheckManagedImage(context.Background()) {
			t.Errorf("%s: image reported present", policy)
		}
		warned := strings.Contains(buf.String(), "IMAGE_PULL_POLICY=missing") && strings.Contains(buf.String(), "registry.example/managed:1")
		if warned != (policy == app.PullNever) {
			t.Errorf("policy %s: warned %v: %q", policy, warned, buf.String())
		}
	}
}
